#pragma once
// A model variant is a type: BlockPolicy names one choice per part, and the presets below are the
// variants the library ships. An ablation is one more line here.

#include "gecko/policy/policies.hpp"

namespace gecko::policy {

template <class InputNorm, class Cema, class Attention, class Memory, class Rows,
          bool Documents = true, bool TwoHopResidual = false>
struct BlockPolicy {
  using input_norm = InputNorm;  // also the final norm
  using cema = Cema;
  using attention = Attention;
  using memory = Memory;
  using z_rows = Rows;
  // Whether bos tokens start documents (multi_segments, spec §4.2). Off for Megalodon.
  static constexpr bool documents = Documents;
  // Whether the variant's FFN must add back the block input (the configuration must agree).
  static constexpr bool requires_two_hop_residual = TwoHopResidual;
  // Whether a layer's cached window keeps the last complete chunk (sliding attention reads it,
  // the working memory absorbs it) or only the current partial chunk (block-diagonal alone).
  static constexpr bool window_keeps_previous_chunk =
      Attention::pattern == cpu::AttentionPattern::SlidingChunks || Memory::enabled;

  static_assert(!Memory::enabled || Rows::count == 4,
                "the working memory reads aq and ak from z rows 2 and 3: use ZRows<4> with WorkingMemory");
  static_assert(!Documents || InputNorm::resets_at_bos,
                "document handling restarts the input norm at a bos: use DecayNorm, or Documents = false");
};

// Gecko as published: decay norm, unit CEMA residual, sliding chunks, working memory.
using Gecko = BlockPolicy<DecayNorm, CemaUnitResidual, SlidingChunks, WorkingMemory, ZRows<4>>;

// Gecko without the working memory. Keeps the four z rows so that a Gecko checkpoint loads as it
// is (rows 2 and 3 are then unused): tokens more than one chunk before the current chunk are out
// of reach.
using GeckoNoMemory = BlockPolicy<DecayNorm, CemaUnitResidual, SlidingChunks, NoWorkingMemory, ZRows<4>>;

// Gecko with Megalodon's block-diagonal attention (chunk-local RoPE positions t mod C): the
// previous chunk reaches the current one only through CEMA, the norms and the working memory.
using GeckoBlockDiagonal = BlockPolicy<DecayNorm, CemaUnitResidual, BlockDiagonal, WorkingMemory, ZRows<4>>;

// Megalodon (spec §12): cumulative norm, learned CEMA residual with γ/√N, block-diagonal
// attention, no working memory, two z rows, two-hop residual, no documents.
using Megalodon = BlockPolicy<CumulativeNorm, CemaLearnedResidual, BlockDiagonal, NoWorkingMemory,
                              ZRows<2>, /*Documents=*/false, /*TwoHopResidual=*/true>;

}  // namespace gecko::policy
