#!/usr/bin/env python3
"""llama.ts against HuggingFace transformers on the same random-weight LLaMA, in one call on the GPU machine.

1. Makes a random-weight HF LLaMA checkpoint (default: the LLaMA-7B shape) in fp16 and saves it.
2. Times HF `generate` (fp16, batch 1, 16-token prompt, greedy, 50 and 128 new tokens).
3. Computes fp32 reference logits with HF (the fp16 weights upcast) over a teacher-forced sequence.
4. Runs llama.ts on the same checkpoint: `cli.ts bench` for decode (16-token prompt, 128 new tokens)
   and prefill (512-token prompt), and bench/logits_dump.ts for teacher-forced logits, in fp16 and
   with weight-only int8 / int4 quantization at load.
5. Compares logits: cosine (mean, min over positions), max abs diff, top-1 agreement; KL of int8/int4
   against llama.ts fp16. Prints a table and writes everything as JSON.

Usage (on the device, from the repo root):
  python3 bench/hf_compare.py --out $OUT --tokenizer .deno/models/llama-2-tiny-random.gguf
Options: --shape tiny for a quick end-to-end check; --skip-hf-generate; --variants f16,int8,int4;
--f64-reference (HF in float64 as a second reference: how far fp32 itself sits from exact).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

SHAPES = {
    "7B": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096),
    "tiny": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=2, num_attention_heads=8,
                 num_key_value_heads=4, vocab_size=32000, max_position_embeddings=1024),
}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def make_checkpoint(path, shape, seed):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    cfg = LlamaConfig(**SHAPES[shape], rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
                      bos_token_id=1, eos_token_id=2, torch_dtype="float16")
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).to(torch.float16)
    model.eval()
    model.save_pretrained(path, safe_serialization=True)
    return model


def cuda_sync_time(fn):
    torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return out, time.perf_counter() - t


def hf_generate_timing(model, prompt, new_tokens):
    ids = torch.tensor([prompt], device="cuda")
    gen = lambda: model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                 pad_token_id=0)
    cuda_sync_time(lambda: model.generate(ids, max_new_tokens=4, min_new_tokens=4, do_sample=False,
                                          pad_token_id=0))  # warm-up
    out, sec = cuda_sync_time(gen)
    return {"new_tokens": new_tokens, "seconds": sec, "tok_per_s": new_tokens / sec,
            "generated": out[0, len(prompt):].tolist()}


def run(cmd, env=None):
    log("+", " ".join(cmd))
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        log(p.stdout[-4000:])
        log(p.stderr[-4000:])
        raise SystemExit(f"command failed ({p.returncode}): {' '.join(cmd)}")
    return p.stdout


def last_json(text):
    """The JSON object a command printed last (one line, or indented over many)."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            return json.loads(line)
    return json.loads(text[text.index("{"):])


def logit_stats(ours, ref):
    ours = ours.astype(np.float64)
    ref = ref.astype(np.float64)
    cos = (ours * ref).sum(-1) / (np.linalg.norm(ours, axis=-1) * np.linalg.norm(ref, axis=-1))
    return {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
            "max_abs_diff": float(np.abs(ours - ref).max()),
            "ref_max_abs": float(np.abs(ref).max()),
            "top1_agreement": float((ours.argmax(-1) == ref.argmax(-1)).mean()),
            "max_abs_diff_per_position": [float(v) for v in np.abs(ours - ref).max(-1)]}


def stats_text(s, diff_fmt=".4f"):
    """One logit_stats result as printed in the summary."""
    return (f"cos mean {s['cosine_mean']:.6f} min {s['cosine_min']:.6f} maxdiff {s['max_abs_diff']:{diff_fmt}} "
            f"top1 {s['top1_agreement']:.3f}")


def kl(p_logits, q_logits):
    """Mean KL(P || Q) over positions, P the reference."""
    def logsoftmax(x):
        x = x.astype(np.float64)
        x = x - x.max(-1, keepdims=True)
        return x - np.log(np.exp(x).sum(-1, keepdims=True))
    lp, lq = logsoftmax(p_logits), logsoftmax(q_logits)
    return float((np.exp(lp) * (lp - lq)).sum(-1).mean())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--shape", default="7B", choices=sorted(SHAPES))
    ap.add_argument("--tokenizer", help="a 32000-token tokenizer for llama.ts (e.g. a Llama-2 GGUF)")
    ap.add_argument("--deno", default="deno")
    ap.add_argument("--ckpt", default=None, help="checkpoint directory (default: a temp dir)")
    ap.add_argument("--positions", type=int, default=64, help="teacher-forced positions compared")
    ap.add_argument("--variants", default="f16,int8,int4")
    ap.add_argument("--skip-hf-generate", action="store_true")
    ap.add_argument("--skip-bench", action="store_true", help="logit comparison only")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--f64-reference", action="store_true",
                    help="also compute HF logits in float64 (the fp16 weights upcast; needs ~2x the fp32 model's "
                         "GPU memory) and compare HF fp32 and every llama.ts variant with them")
    ap.add_argument("--checkpoint-only", action="store_true",
                    help="write the random-weight checkpoint to --ckpt and stop (for the other device scripts)")
    a = ap.parse_args()
    if a.checkpoint_only:
        if not a.ckpt:
            ap.error("--checkpoint-only needs --ckpt DIR")
        t = time.perf_counter()
        make_checkpoint(a.ckpt, a.shape, a.seed)
        log(f"checkpoint written to {a.ckpt} in {time.perf_counter() - t:.1f} s")
        return
    if not a.tokenizer:
        ap.error("--tokenizer is required")
    os.makedirs(a.out, exist_ok=True)
    ckpt = a.ckpt or tempfile.mkdtemp(prefix="hf-llama-")
    report = {"shape": a.shape, "device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    import transformers
    report["transformers"] = transformers.__version__

    t = time.perf_counter()
    model = make_checkpoint(ckpt, a.shape, a.seed)
    report["checkpoint_seconds"] = time.perf_counter() - t
    log(f"checkpoint written to {ckpt} in {report['checkpoint_seconds']:.1f} s")
    rng = np.random.default_rng(a.seed)
    vocab = SHAPES[a.shape]["vocab_size"]
    prompt = [1] + rng.integers(3, vocab, size=15).tolist()

    if not a.skip_hf_generate:
        report["hf_generate"] = [hf_generate_timing(model, prompt, n) for n in (50, 128)]
        report["hf_attn_implementation"] = getattr(model.config, "_attn_implementation", "?")
        log("HF generate:", [(g["new_tokens"], round(g["tok_per_s"], 1)) for g in report["hf_generate"]])

    # teacher-forced sequence: the prompt, then HF's own greedy continuation (realistic, not random)
    cont = report["hf_generate"][1]["generated"] if "hf_generate" in report else rng.integers(3, vocab, 48).tolist()
    seq = (prompt + cont)[: a.positions]
    ids_path = os.path.join(a.out, "ids.json")
    with open(ids_path, "w") as f:
        json.dump(seq, f)
    with torch.no_grad():
        model32 = model.to(torch.float32)
        ref = model32(torch.tensor([seq], device="cuda")).logits[0].float().cpu().numpy()
        ref64 = ref64r = None
        if a.f64_reference:
            # how far two fp32 computations of this network sit from the exact result: HF's own fp32
            # against float64 is the yardstick for llama.ts's fp32-accumulated logits
            model64 = model32.to(torch.float64)
            ids_t = torch.tensor([seq], device="cuda")
            ref64 = model64(ids_t).logits[0].double().cpu().numpy()
            report["hf_fp32_vs_hf_f64"] = logit_stats(ref, ref64)
            log("HF fp32 vs HF f64:", json.dumps(report["hf_fp32_vs_hf_f64"]))
            # HF computes the RoPE angles in float32 even in a float64 model (its rotary embedding casts to
            # float); the same model with the angles in float64 is the exact reference
            rot = model64.model.rotary_emb
            cfg = model64.config
            theta = (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta", getattr(cfg, "rope_theta", 10000.0))
            hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads

            def rope64(x, position_ids):
                inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float64, device=x.device) / hd))
                freqs = position_ids[..., None].double() * inv
                emb = torch.cat((freqs, freqs), dim=-1)
                return emb.cos().to(x.dtype), emb.sin().to(x.dtype)

            rot.forward = rope64
            ref64r = model64(ids_t).logits[0].double().cpu().numpy()
            report["hf_f64_vs_f64_rope64"] = logit_stats(ref64, ref64r)
            del model64
    del model, model32
    torch.cuda.empty_cache()
    np.save(os.path.join(a.out, "hf_fp32_logits.npy"), ref[:8])

    deno = [a.deno, "run", "-A"]
    results = {}
    for variant in filter(None, a.variants.split(",")):
        # variants: f16 | int8 | int4, then any of "+ref" (logits from the ref backend instead of cuda, --skip-bench
        # only), "+kvf32" (f32 KV cache; default f16), "+kvi8" (int8 KV
        # cache), "+nopdl" (small kernels launched without programmatic dependent launch: the A/B baseline
        # of that change; decode only)
        base, *flags = variant.split("+")
        extra = ([] if base == "f16" else ["--weight-quant", base]) + (["--kv-dtype", "f32"] if "kvf32" in flags else []) \
            + (["--kv-dtype", "int8"] if "kvi8" in flags else [])
        env = dict(os.environ, LLAMA_TS_CUDA_NO_PDL="1") if "nopdl" in flags else None
        if "nopdl" in flags:
            decode = last_json(run(deno + ["cli.ts", "bench", "--model", ckpt, "--tokenizer", a.tokenizer, "--backend",
                                           "cuda", "--prompt-tokens", "16", "--gen-tokens", "128", "--repeat", "3",
                                           "--ctx", "1024"] + extra, env))
            results[variant] = {"decode": {k: decode[k] for k in ("decodeTokPerS", "runs")}}
            log(variant, json.dumps({"decode": decode["decodeTokPerS"]}))
            continue
        dump = os.path.join(tempfile.gettempdir(), f"logits-{variant}.f32")
        info = last_json(run(deno + ["bench/logits_dump.ts", "--model", ckpt, "--tokenizer", a.tokenizer,
                                     "--ids", ids_path, "--out", dump, "--backend",
                                     "ref" if "ref" in flags else "cuda"] + extra))
        ours = np.fromfile(dump, dtype=np.float32).reshape(len(seq), vocab)
        entry = {"load": info, "vs_hf_fp32": logit_stats(ours, ref)}
        if ref64 is not None:
            entry["vs_hf_f64"] = logit_stats(ours, ref64)
            entry["vs_f64_rope64"] = logit_stats(ours, ref64r)
        if variant == "f16":
            results["_f16_logits"] = ours
        if variant != "f16" and "_f16_logits" in results:
            entry["kl_vs_f16"] = kl(results["_f16_logits"], ours)
            entry["top1_vs_f16"] = float((ours.argmax(-1) == results["_f16_logits"].argmax(-1)).mean())
        if a.skip_bench:
            results[variant] = entry
            continue
        decode = last_json(run(deno + ["cli.ts", "bench", "--model", ckpt, "--tokenizer", a.tokenizer, "--backend",
                                       "cuda", "--prompt-tokens", "16", "--gen-tokens", "128", "--repeat", "3",
                                       "--ctx", "1024"] + extra))
        entry["decode"] = {k: decode[k] for k in ("decodeTokPerS", "prefillTokPerS", "runs", "deviceMemoryUsed",
                                                  "weightDTypes", "loadMs")}
        prefill = last_json(run(deno + ["cli.ts", "bench", "--model", ckpt, "--tokenizer", a.tokenizer, "--backend",
                                        "cuda", "--prompt-tokens", "512", "--gen-tokens", "2", "--repeat", "3",
                                        "--ctx", "1024"] + extra))
        entry["prefill512"] = {k: prefill[k] for k in ("prefillTokPerS", "runs")}
        results[variant] = entry
        log(variant, json.dumps({"decode": entry["decode"]["decodeTokPerS"],
                                 "prefill512": entry["prefill512"]["prefillTokPerS"],
                                 "cos_min": entry["vs_hf_fp32"]["cosine_min"], "kl": entry.get("kl_vs_f16")}))
    results.pop("_f16_logits", None)
    report["llama_ts"] = results
    with open(os.path.join(a.out, "hf_compare.json"), "w") as f:
        json.dump(report, f, indent=1)

    print(f"\n== {report['device']}, {a.shape} shape, random weights ==")
    if "hf_fp32_vs_hf_f64" in report:
        print(f"HF fp32 vs HF f64: {stats_text(report['hf_fp32_vs_hf_f64'])}")
        print(f"HF f64 vs f64 with f64 RoPE angles: {stats_text(report['hf_f64_vs_f64_rope64'], '.2e')}")
        for v, e in results.items():
            for key, name in (("vs_hf_f64", "HF f64"), ("vs_f64_rope64", "f64 with f64 RoPE angles")):
                if key in e:
                    print(f"llama.ts {v} vs {name}: {stats_text(e[key], '.2e')}")
    for g in report.get("hf_generate", []):
        print(f"HF transformers {report['transformers']} fp16 generate ({report.get('hf_attn_implementation')}), "
              f"{g['new_tokens']} new: {g['tok_per_s']:.1f} tok/s ({g['seconds']:.2f} s)")
    for v, e in results.items():
        if "vs_hf_fp32" not in e:
            print(f"llama.ts {v:5s} decode {e['decode']['decodeTokPerS']:7.1f} tok/s (runs {e['decode']['runs']})")
            continue
        s = e["vs_hf_fp32"]
        if "decode" not in e:
            print(f"llama.ts {v}: vs HF fp32 {stats_text(s)}")
            continue
        print(f"llama.ts {v:5s} decode {e['decode']['decodeTokPerS']:7.1f} tok/s | prefill512 "
              f"{e['prefill512']['prefillTokPerS']:8.0f} tok/s | vs HF fp32: {stats_text(s)}"
              + (f" | KL vs f16 {e['kl_vs_f16']:.2e} top1 {e['top1_vs_f16']:.3f}" if "kl_vs_f16" in e else "")
              + f" | mem {e['decode']['deviceMemoryUsed'] / 2**30:.1f} GiB")

if __name__ == "__main__":
    main()
