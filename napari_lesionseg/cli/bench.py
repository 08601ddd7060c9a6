"""`lesionseg bench`: time the inference engine (and the metrics) and print a report.

Examples:
    lesionseg bench                                   # both workloads, both networks, CPU (+ CUDA)
    lesionseg bench --json --device cuda              # the paper workload on the GPU, as JSON
    lesionseg bench --device cpu --patches 8          # time 8 patches per run and extrapolate
    lesionseg bench --quick                           # compact network, 8 patches: a few minutes on a laptop
    lesionseg bench --model compact --workload sample --workload 1mm --device cpu   # the CPU fast path, whole grids
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from napari_lesionseg.vocabulary import BENCH_WORKLOADS, PRECISIONS

__all__ = ["register"]

_QUICK_PATCHES = 8


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `bench` subcommand."""
    parser = subparsers.add_parser(
        "bench",
        help="time inference per stage against MONAI's sliding window (and the metrics)",
        description="Time the patch inference engine per stage (I/O, normalisation, network, fusion) on a 2 mm "
        "sample subject, a 1 mm subject and the paper's workload (5 x 128x224x256, 64^3 patches, 50 % overlap, "
        "4 augmentations: 1,440 predictions), beside MONAI's sliding_window_inference as its users run it and tuned "
        "like ours; the float32 path against the fast path on the sample subject. Numbers are reported, not judged.",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--suite", default="inference", choices=("inference", "metrics", "finetune", "all"), help="what to time (default: %(default)s)")
    parser.add_argument("--device", action="append", choices=("cpu", "cuda", "mps"), help="device (repeatable; default: cpu, plus cuda when present)")
    parser.add_argument("--model", action="append", choices=("paper", "compact"), help="network preset (repeatable; default: both)")
    parser.add_argument("--workload", action="append", choices=BENCH_WORKLOADS, help="workload (repeatable; default: all)")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS, help="the engine's precision (default: %(default)s)")
    parser.add_argument("--patches", type=int, metavar="N", help="time at most N patches per run and extrapolate to the whole grid")
    parser.add_argument("--batch-size", type=int, help="patches per network call (default: 2 on CPU, 8 on CUDA)")
    parser.add_argument("--no-monai", dest="monai", action="store_false", help="skip the MONAI comparison")
    parser.add_argument("--threads", type=int, metavar="N", help="CPU threads (torch.set_num_threads; default: torch's)")
    parser.add_argument("--quick", action="store_true", help=f"compact network only, at most {_QUICK_PATCHES} patches per run")
    parser.set_defaults(func=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    """Run the chosen suites and print their reports."""
    report: dict[str, Any] = {}
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.suite in ("inference", "all"):
        from napari_lesionseg.benchmarks.inference import run_inference_benchmark

        report["inference"] = run_inference_benchmark(
            devices=args.device,
            presets=args.model or (("compact",) if args.quick else ("paper", "compact")),
            workloads=args.workload or BENCH_WORKLOADS,
            max_patches=args.patches if args.patches is not None else (_QUICK_PATCHES if args.quick else None),
            batch_size=args.batch_size,
            monai=args.monai,
            precision=args.precision,
        )
    if args.suite in ("metrics", "all"):
        from napari_lesionseg.benchmarks.metrics import run_metrics_benchmark

        report["metrics"] = run_metrics_benchmark()
    if args.suite in ("finetune", "all"):
        from napari_lesionseg.benchmarks.finetune import run_finetune_benchmark

        report["finetune"] = run_finetune_benchmark(device=(args.device or ["cpu"])[0], precision=args.precision)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def format_report(report: dict[str, Any]) -> str:
    """A readable table of the inference results (and the metrics and fine-tune timings)."""
    lines = []
    inference = report.get("inference")
    if inference:
        machine = inference["machine"]
        load = machine.get("load_average")
        lines.append(
            f"machine: {machine['processor']} ({machine['cpu_count']} CPUs, {machine['torch_threads']} torch threads), "
            f"GPU: {machine['cuda'] or 'none'}, torch {machine['torch']}, native bfloat16: {machine.get('native_bfloat16')}"
            + (f", load average {load[0]:.1f}" if load else "")
        )
        for entry in inference["results"]:
            lines.extend(_format_entry(entry))
        if inference.get("accuracy"):
            lines.append(_format_accuracy(inference["accuracy"]))
    metrics = report.get("metrics")
    if metrics:
        lines.append(f"metrics: compute_metrics on {metrics['shape']}: {metrics['compute_metrics_s']:.2f} s")
        lines.extend(f"  {name}: {seconds:.3f} s" for name, seconds in metrics["stages_s"].items())
    finetune = report.get("finetune")
    if finetune:
        seconds, targets = finetune["seconds"], finetune["targets"]
        lines.append(
            f"fine-tune: {finetune['iterations']} iterations of {finetune['checkpoint']} on {finetune['subject']} "
            f"{'x'.join(map(str, finetune['shape']))} ({finetune['device']}, {finetune['precision']}): {seconds['total']:.1f} s "
            f"(before {seconds['before']:.1f} s, training {seconds['training']:.1f} s, after {seconds['after']:.1f} s; "
            f"targets: training under {targets['training_s_max']:.0f} s, all under {targets['total_s_max']:.0f} s), "
            f"{finetune['skipped_steps']} steps skipped, DSC {finetune['dsc_before']:.3f} -> {finetune['dsc_after']:.3f}"
        )
    return "\n".join(lines)


def _format_entry(entry: dict[str, Any]) -> list[str]:
    if "skipped" in entry:
        return [f"{entry['workload']}: skipped: {entry['skipped']}"]
    stages = entry["stages_s"]
    measured = f"measured {entry['patches_measured']} of {entry['patches_total']} patches, extrapolated" if entry["extrapolated"] else "all patches measured"
    skipped = "not skipped (extrapolated)" if entry["patches_skipped"] is None else f"{entry['patches_skipped']} skipped"
    lines = [
        f"\n{entry['workload']} / {entry['model']} / {entry['device']} / {entry['precision_label']}: {entry['description']}",
        (
            f"  grid {'x'.join(map(str, entry['grid']))} = {entry['patches_total']} patches, {entry['predictions_total']} "
            f"predictions ({measured}); {entry['patches_background']} background patches, {skipped}"
        ),
        "  stages: " + ", ".join(f"{k} {v:.2f} s" for k, v in stages.items()),
        (
            f"  engine {entry['engine_s']:.2f} s, end to end {entry['end_to_end_s']:.2f} s, {entry['patches_per_s']:.2f} "
            f"patches/s, {entry['predictions_per_s']:.2f} predictions/s, fusion/network {_ratio(entry['fusion_over_network'])}"
        ),
        "  fusion alone (random predictions, whole grid): " + ", ".join(f"{k} {v:.3f} s" for k, v in entry["fusion_modes_s"].items()),
    ]
    view = entry.get("first_view")
    if view and view["first_view_s"] is not None:
        lines.append(f"  first view: slice {view['slice']} ({view['patches_covering']} patches) fully fused after {view['first_view_s']:.2f} s")
    monai = entry.get("monai")
    if monai:
        lines.append(
            f"  same grid/network/device/flips, uniform: ours {monai['ours_s']:.2f} s ({monai['patches_skipped']} skipped; every patch "
            f"{monai['ours_all_patches_s']:.2f} s), MONAI as users run it {monai['monai_s']:.2f} s, MONAI tuned "
            f"({monai['precision']}, same layout) {monai['monai_tuned_s']:.2f} s, on our fused network {monai['monai_fused_s']:.2f} s; "
            f"ours/MONAI {monai['ours_over_monai']:.3f}, ours/MONAI tuned {monai['ours_over_monai_tuned']:.3f}, every patch/MONAI "
            f"fused {monai['ours_all_patches_over_monai_fused']:.3f} (max |difference| at equal work {monai['max_abs_difference']:.1e})"
        )
    met = {k: v for k, v in entry["targets_met"].items() if v is not None}
    lines.append("  targets: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in met.items()))
    return lines


def _format_accuracy(accuracy: dict[str, Any]) -> str:
    return (
        f"\naccuracy: {accuracy['checkpoint']} on {accuracy['subject']}, float32 with every patch ({accuracy['float32_s']:.1f} s) "
        f"against the fast path ({accuracy['precision']}, {accuracy['patches_skipped']} of {accuracy['patches']} patches skipped, "
        f"{accuracy['fast_s']:.1f} s): max |probability difference| {accuracy['max_abs_difference']:.4f} "
        f"({accuracy['max_abs_difference_in_head']:.4f} inside the head), mask voxels changed {accuracy['mask_voxels_changed']} "
        f"of {accuracy['mask_voxels_float32']}"
    )


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"
