// Test hook of the multi-GPU combine (src/consumer/ep_combine.cu); not part of the public API.
#pragma once

#include <cstdint>

#include "signalgemm/ep_combine.h"

namespace signalgemm::test_hooks {

// Makes a context on which no combine has run yet continue an epoch count at `first_epoch`, as if
// every epoch before it had been reduced on this rank, so that tests reach epochs 2^31 apart and the
// wrap past 0xFFFFFFFF. Call it on every rank, and wait for it, before the first combine.
Status ep_combine_start_at_epoch(EpCombineContext* context, uint32_t first_epoch);

}  // namespace signalgemm::test_hooks
