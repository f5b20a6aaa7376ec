// A second translation unit that includes every public CUDA header, linked into test_model_gpu
// next to the test file that includes them too: a definition that a header emits in every unit
// (a non-inline function or variable, a non-template kernel) then fails the link here, before it
// fails in a user's project with two .cu files.
#include "gecko/cuda.cuh"
#include "gecko/cuda/model.cuh"
