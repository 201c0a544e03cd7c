"""The embedded default scenario run by ``hwsim demo`` (the same as scenarios/quickstart.yaml).

Llama-3-8B served on one H100-SXM by vLLM-style continuous batching, under a synthetic workload
fitted to the Azure LLM conversation trace (arrival rate, burstiness, prompt and output lengths).
"""

QUICKSTART_YAML = """\
name: quickstart
description: >-
  Llama-3-8B on 1x H100-SXM, vLLM-style continuous batching, synthetic workload fitted to the
  Azure LLM conversation trace (about 5.6 requests/s, lognormal prompts and outputs).
seed: 42
hardware:
  device: {kind: gpu, preset: H100-SXM}
  timing: {kind: tile}
model: {kind: transformer, preset: Llama-3-8B}
cluster: {replicas: 1, tensor_parallel: 1, router: {kind: round_robin}}
engine: {gpu_memory_utilization: 0.9, activation_reserve: 2GiB, max_model_len: 8192}
workload:
  kind: synthetic
  num_requests: 2000
  arrival: {process: gamma, rate: 5.594/s, cv: 1.073}
  prompt_tokens: {dist: lognormal, median: 821.9, sigma: 0.9743, min: 2, max: 7000}
  output_tokens: {dist: lognormal, median: 152.4, sigma: 0.9058, min: 7, max: 1000}
policies:
  scheduler: {kind: vllm, block_size: 16, max_num_seqs: 256, max_num_batched_tokens: 8192}
slo: {ttft: 2s, tpot: 100ms, attainment: 0.9}
run: {warmup_requests: 100}
"""
