#pragma once
// The one place that looks at __CUDACC__: everything else uses these macros, so headers outside
// cuda/ compile with a plain host compiler.

#if defined(__CUDACC__)
#define GECKO_HOST_DEVICE __host__ __device__
#define GECKO_DEVICE __device__
#define GECKO_CUDA_COMPILER 1
#else
#define GECKO_HOST_DEVICE
#define GECKO_DEVICE
#define GECKO_CUDA_COMPILER 0
#endif

#if defined(__CUDA_ARCH__)
#define GECKO_DEVICE_PASS 1
#else
#define GECKO_DEVICE_PASS 0
#endif

#define GECKO_FORCEINLINE inline __attribute__((always_inline))
