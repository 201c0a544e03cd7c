"""Small analytic study models built from the hardware models, for what the serving engine does not run:
    kernel-level results (``gpu_kernels``, ``vattention``, ``hydragen``) and CacheGen's codec arithmetic. The
    offloading papers (FlexGen, H2O, LLM in a flash, InstInfer, ShadowKV, TPI-LLM) are serving scenarios
    (``policies.weight_offload``, ``policies.kv_cache: shadowkv``). Each study is a function of a strict config
    returning a flat dict."""
