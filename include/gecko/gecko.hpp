#pragma once
// gecko: the CPU library in one include. Compiles with a plain host compiler; the CUDA path has
// its own entry (gecko/cuda.cuh) and is never pulled in from here.
//
//   #include <gecko/gecko.hpp>
//   auto model = gecko::model::load_model<gecko::policy::Gecko, float>("model.safetensors");
//   gecko::model::ModelState<float> state;                // one per stream
//   auto logits = model.forward(tokens, state);           // (B, L) int64 → (B, L, V)

#include "gecko/core/complex.hpp"
#include "gecko/core/config.hpp"
#include "gecko/core/dtype.hpp"
#include "gecko/core/error.hpp"
#include "gecko/core/shape.hpp"
#include "gecko/core/tensor.hpp"
#include "gecko/io/safetensors.hpp"

#include "gecko/expr/expr.hpp"
#include "gecko/exec/cpu_executor.hpp"

#include "gecko/cpu/cema.hpp"
#include "gecko/cpu/feed_forward.hpp"
#include "gecko/cpu/group_norm.hpp"
#include "gecko/cpu/linear.hpp"
#include "gecko/cpu/rope.hpp"
#include "gecko/cpu/sliding_chunk_attention.hpp"
#include "gecko/cpu/timestep_norm.hpp"
#include "gecko/cpu/working_memory.hpp"

#include "gecko/policy/policies.hpp"
#include "gecko/policy/presets.hpp"

#include "gecko/layers/block.hpp"
#include "gecko/layers/layer_state.hpp"
#include "gecko/layers/mega.hpp"

#include "gecko/model/checkpoint.hpp"
#include "gecko/model/config.hpp"
#include "gecko/model/init.hpp"
#include "gecko/model/model.hpp"
#include "gecko/model/presets.hpp"
#include "gecko/model/state.hpp"
