"""`vesselzip compress`, `decompress` and `inspect`: NIfTI <-> .vz blob on the command line."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from vesselzip.codecs import codec_ids, get_codec, parse_codec_spec
from vesselzip.codecs.zfp import BACKENDS, MODES
from vesselzip.container import BlobInfo, decode_volume, encode_volume, read_blob_info
from vesselzip.errors import VesselzipError
from vesselzip.settings import get_settings
from vesselzip.volumes import read_volume, write_volume


def register(subparsers: argparse._SubParsersAction) -> None:
    compress = subparsers.add_parser(
        "compress",
        help="compress a NIfTI volume into a .vz blob",
        description="Compress a .nii/.nii.gz volume into a self-describing .vz blob. "
        "Choose the codec with --spec (e.g. zfp:tolerance=500, zfp:rate=2, none) or with "
        "--codec/--mode/--value. Without either: zfp reversible (lossless).",
    )
    compress.add_argument("input", type=Path, help="the .nii or .nii.gz volume")
    compress.add_argument("output", type=Path, help="where to write the blob (e.g. out.vz)")
    compress.add_argument("--spec", help="codec spec, e.g. zfp:tolerance=500 or zfp:rate=2")
    compress.add_argument("--codec", choices=codec_ids(), default="zfp", help="codec id")
    compress.add_argument("--mode", choices=MODES, help="zfp mode")
    compress.add_argument("--value", type=float, help="the mode's parameter")
    compress.add_argument("--backend", choices=BACKENDS, help="zfp binding (default zfpy)")
    compress.add_argument(
        "--metrics", action="store_true", help="also decode and report PSNR, SSIM, errors"
    )
    compress.add_argument("--json", action="store_true", help="print a JSON object")
    compress.set_defaults(handler=run_compress)

    decompress = subparsers.add_parser(
        "decompress",
        help="decode a .vz blob back into NIfTI",
        description="Decode a .vz blob into a .nii/.nii.gz on the original grid.",
    )
    decompress.add_argument("blob", type=Path, help="the .vz blob")
    decompress.add_argument("output", type=Path, help="the .nii or .nii.gz to write")
    decompress.add_argument("--json", action="store_true", help="print a JSON object")
    decompress.set_defaults(handler=run_decompress)

    inspect = subparsers.add_parser(
        "inspect",
        help="describe a .vz blob without decoding it",
        description="Check a .vz blob (magic, version, checksums) and print what it holds.",
    )
    inspect.add_argument("blob", type=Path, help="the .vz blob")
    inspect.add_argument("--json", action="store_true", help="print a JSON object")
    inspect.set_defaults(handler=run_inspect)


def run_compress(args: argparse.Namespace) -> int:
    codec = get_codec(_codec_config(args))
    input_nbytes = _file_size(args.input)
    start = time.perf_counter()
    volume = read_volume(args.input, max_voxels=get_settings().max_voxels)
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    blob = encode_volume(volume, codec)
    compress_s = time.perf_counter() - start
    _write_bytes(args.output, blob)
    info = read_blob_info(blob)
    report: dict[str, Any] = {
        "input": str(args.input),
        "output": str(args.output),
        "input_nbytes": input_nbytes,
        "cr_input_file": input_nbytes / info.blob_nbytes,
        "read_s": read_s,
        "compress_s": compress_s,
        "compress_mb_s": info.raw_nbytes / 1e6 / compress_s if compress_s > 0 else None,
        "blob": info.to_dict(),
    }
    if args.metrics:
        from vesselzip.metrics.compression import compression_metrics

        start = time.perf_counter()
        decoded = decode_volume(blob)
        decompress_s = time.perf_counter() - start
        gz_nbytes = input_nbytes if args.input.name.endswith(".gz") else None
        report["metrics"] = compression_metrics(
            volume.data,
            decoded.data,
            blob_nbytes=len(blob),
            nifti_gz_nbytes=gz_nbytes,
            compress_s=compress_s,
            decompress_s=decompress_s,
        )
    if args.json:
        _print_json(report)
        return 0
    print(f"{args.input} -> {args.output}  [{info.codec_label}]")
    _print_info(info)
    print(f"  input file   {_size(input_nbytes)}")
    print(
        f"  ratio        {info.compression_ratio:.2f}:1 vs raw, "
        f"{report['cr_input_file']:.2f}:1 vs the input file"
    )
    speed = report["compress_mb_s"]
    print(
        f"  time         read {read_s:.3f} s, compress {compress_s:.3f} s"
        + (f" ({speed:.0f} MB/s)" if speed else "")
    )
    if args.metrics:
        _print_metrics(report["metrics"])
    return 0


def run_decompress(args: argparse.Namespace) -> int:
    blob = _read_bytes(args.blob)
    start = time.perf_counter()
    volume = decode_volume(blob, max_voxels=get_settings().max_voxels)
    decompress_s = time.perf_counter() - start
    write_volume(args.output, volume.data, volume)
    output_nbytes = _file_size(args.output)
    report = {
        "blob": str(args.blob),
        "output": str(args.output),
        "blob_nbytes": len(blob),
        "output_nbytes": output_nbytes,
        "shape": list(volume.shape),
        "dtype": volume.dtype.name,
        "decompress_s": decompress_s,
    }
    if args.json:
        _print_json(report)
        return 0
    shape = "x".join(str(n) for n in volume.shape)
    print(f"{args.blob} -> {args.output}")
    print(f"  volume       {shape} {volume.dtype.name}")
    print(f"  blob         {_size(len(blob))}")
    print(f"  output file  {_size(output_nbytes)}")
    print(f"  time         decompress {decompress_s:.3f} s")
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    info = read_blob_info(_read_bytes(args.blob))
    if args.json:
        _print_json({"blob": str(args.blob), **info.to_dict()})
        return 0
    print(f"{args.blob}: vesselzip blob version {info.version}, checksums OK")
    print(f"  codec        {info.codec_label}  {json.dumps(info.codec)}")
    _print_info(info)
    print(f"  ratio        {info.compression_ratio:.2f}:1 vs raw")
    print(f"  sha256       {info.sha256}")
    return 0


def _codec_config(args: argparse.Namespace) -> dict:
    if args.spec:
        if args.mode or args.value is not None:
            raise VesselzipError("give either --spec or --mode/--value, not both")
        config = parse_codec_spec(args.spec)
    else:
        config = {"id": args.codec}
        if args.mode:
            config["mode"] = args.mode
        if args.value is not None:
            config["value"] = args.value
    if args.backend:
        config["backend"] = args.backend
    return config


def _print_info(info: BlobInfo) -> None:
    shape = "x".join(str(n) for n in info.shape)
    spacing = "x".join(f"{s:g}" for s in info.spacing)
    print(f"  volume       {shape} {info.dtype}, voxels {spacing} mm")
    print(f"  raw          {_size(info.raw_nbytes)}")
    print(
        f"  blob         {_size(info.blob_nbytes)}, payload {info.payload_nbytes} bytes, "
        f"{info.bits_per_voxel:.3g} bits/voxel"
    )


def _print_metrics(metrics: dict) -> None:
    psnr = metrics["psnr_db"]
    ssim = metrics["ssim"]
    print(
        f"  quality      max |error| {metrics['max_abs_error']:g}, rmse {metrics['rmse']:.3g}, "
        f"PSNR {'lossless' if psnr is None else f'{psnr:.2f} dB'}, "
        f"SSIM {'n/a' if ssim is None else f'{ssim:.4f}'}"
    )
    print(f"  time         decompress {metrics['decompress_s']:.3f} s")


def _size(nbytes: int) -> str:
    return f"{nbytes / 1e6:.3f} MB ({nbytes} bytes)"


def _print_json(report: dict) -> None:
    print(json.dumps(report, indent=2))


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise VesselzipError(f"cannot read {path}: {exc.strerror}") from exc


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise VesselzipError(f"cannot read {path}: {exc.strerror}") from exc


def _write_bytes(path: Path, payload: bytes) -> None:
    try:
        path.write_bytes(payload)
    except OSError as exc:
        raise VesselzipError(f"cannot write {path}: {exc.strerror}") from exc
