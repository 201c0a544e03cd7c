"""Extract the Triton fused-MoE kernel configurations the frameworks ship for the H200 into
``hw_models/moe_configs_h200.json`` (the product reads that file, never the wheels).

    pip download --no-deps sglang==0.5.6.post2 sglang==0.5.8.post1 sglang==0.5.9 sglang==0.5.10 sglang==0.5.14 \
        vllm==0.19.0 vllm==0.24.0 -d WHEELS
    python -m simulator.validation.aic_moe_configs WHEELS hw_models/moe_configs_h200.json

Models: each framework version's lookup of a tuned configuration file, resolved once here for every
    H200 file the wheel holds, so that the shipped table maps (E, N, dtype) straight to the file the
    framework would load:
    - SGLang (``fused_moe_triton_config.get_moe_configs``): the file of the running Triton version's
      directory ``configs/triton_<x_y_z>/``, else the first other directory holding it --
      sglang==0.5.10 sglang/srt/layers/moe/fused_moe_triton/fused_moe_triton_config.py: a fixed list
      ["3.4.0", "3.3.1", "3.2.0", "3.1.0"]; sglang==0.5.14
      sglang/srt/layers/moe/moe_runner/triton_utils/fused_moe_triton_config.py: every directory on disk,
      newest first. Down-projection files (``..._down.json``) are kept apart (``get_moe_configs(...,
      down_moe=True)``). Names carry ``block_shape=[128, 128]`` (a Python list, with its space).
    - vLLM (vllm/model_executor/layers/fused_moe/fused_moe.py ``get_moe_configs``): one flat
      ``configs/`` directory, no Triton-version lookup; ``block_shape=[128,128]`` without the space.
    sglang==0.5.6.post2 / 0.5.8.post1 / 0.5.9 (the serving rows' releases) have 0.5.10's
    fused_moe_triton_config.py unchanged (same lookup list and defaults) and pin torch==2.9.1.
    The Triton version each framework runs is the one its pinned torch requires: sglang 0.5.10 pins
    torch==2.9.1 (triton==3.5.1), sglang 0.5.14 / vllm 0.19.0 / vllm 0.24.0 pin torch 2.10.0 / 2.11.0
    (triton==3.6.0) (the wheels' METADATA Requires-Dist and torch's).
Ignores: configurations of other GPUs (the table is the H200's only; other devices fall back to the
    framework's default configuration, ``hw_models.moe_configs.default_config``), per-channel int8
    files, user override directories (``SGLANG_MOE_CONFIG_DIR``, ``VLLM_TUNED_CONFIG_FOLDER``).
"""

from __future__ import annotations

import json
import re
import sys
import zipfile
from pathlib import Path

_SGL_0510 = ("sglang/srt/layers/moe/fused_moe_triton/configs/", "3.5.1", ("3.4.0", "3.3.1", "3.2.0", "3.1.0"))
SETS = {  # config set: (wheel glob, configs directory inside the wheel, Triton version run, lookup)
    "sglang==0.5.6.post2": ("sglang-0.5.6.post2-*.whl", *_SGL_0510),
    "sglang==0.5.8.post1": ("sglang-0.5.8.post1-*.whl", *_SGL_0510),
    "sglang==0.5.9": ("sglang-0.5.9-*.whl", *_SGL_0510),
    "sglang==0.5.10": ("sglang-0.5.10-*.whl", "sglang/srt/layers/moe/fused_moe_triton/configs/", "3.5.1",
                       ("3.4.0", "3.3.1", "3.2.0", "3.1.0")),
    "sglang==0.5.14": ("sglang-0.5.14-*.whl", "sglang/srt/layers/moe/moe_runner/triton_utils/configs/", "3.6.0",
                       None),  # None: every directory on disk, newest first
    "vllm==0.19.0": ("vllm-0.19.0-*.whl", "vllm/model_executor/layers/fused_moe/configs/", "", ()),
    "vllm==0.24.0": ("vllm-0.24.0-*.whl", "vllm/model_executor/layers/fused_moe/configs/", "", ()),
}
NAME = re.compile(r"^E=(\d+),N=(\d+),device_name=NVIDIA_H200(,dtype=[^,]+?)?(,block_shape=\[(\d+), ?(\d+)\])?"
                  r"(_down)?\.json$")


def key_of(experts: int, n: int, dtype: str, block: tuple[int, int] | None, down: bool = False) -> str:
    """The table's key of one configuration file: ``E,N,dtype[,block_n,block_k][,down]``."""
    k = f"{experts},{n},{dtype or 'bf16'}"
    if block:
        k += f",{block[0]},{block[1]}"
    return k + (",down" if down else "")


def _version(d: str) -> tuple[int, ...]:
    return tuple(int(x) for x in d.removeprefix("triton_").split("_"))


def extract_set(wheel: Path, root: str, triton: str, fallback: tuple | None) -> dict:
    """{key: {"file": path inside the wheel, "configs": {M: config}}} of one framework version."""
    out: dict = {}
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if n.startswith(root) and "NVIDIA_H200" in n]
        by_dir: dict[str, dict[str, str]] = {}
        for n in names:
            rel = n[len(root):]
            d, _, f = rel.rpartition("/")
            by_dir.setdefault(d, {})[f] = n
        if triton:
            dirs = [f"triton_{triton.replace('.', '_')}"]
            if fallback is None:
                dirs += sorted((d for d in by_dir if d.startswith("triton_")), key=_version, reverse=True)
            else:
                dirs += [f"triton_{v.replace('.', '_')}" for v in fallback if v != triton]
        else:
            dirs = [""]
        for d in dirs:
            for f, path in sorted(by_dir.get(d, {}).items()):
                m = NAME.match(f)
                if m is None:
                    continue
                dtype = (m.group(3) or "").removeprefix(",dtype=")
                block = (int(m.group(5)), int(m.group(6))) if m.group(4) else None
                key = key_of(int(m.group(1)), int(m.group(2)), dtype, block, bool(m.group(7)))
                if key in out:  # an earlier directory of the lookup order holds it
                    continue
                table = json.loads(z.read(path))
                table.pop("triton_version", None)
                out[key] = {"file": path, "configs": {str(int(k)): v for k, v in table.items()}}
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m simulator.validation.aic_moe_configs WHEEL_DIR OUT.json", file=sys.stderr)
        return 2
    wheels, dest = Path(argv[0]), Path(argv[1])
    doc: dict = {"device": "NVIDIA_H200", "sets": {}}
    for name, (glob, root, triton, fallback) in SETS.items():
        found = sorted(wheels.glob(glob))
        if not found:
            print(f"{wheels}: no wheel matching {glob}", file=sys.stderr)
            return 2
        doc["sets"][name] = {"wheel": found[0].name, "triton": triton,
                             "files": extract_set(found[0], root, triton, fallback)}
    dest.write_text(json.dumps(doc, indent=None, separators=(",", ":"), sort_keys=True) + "\n")
    for name, s in doc["sets"].items():
        print(f"{name}: {len(s['files'])} H200 configuration files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
