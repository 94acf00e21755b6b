"""The hostile-upload corpus: files and form fields a stranger may send, each with the
answer the gateway must give. The service tests post every case (as a job, and the
image cases as a dataset too) and check the answer and that nothing was stored;
docs/reliability.md's tables are generated from this module and checked against it.

Write the corpus to a folder (one file per case, plus cases.json with what each one
must get back) to replay it against any running service:

    python tests/service/hostile.py OUT_DIR
    python tests/service/hostile.py --tables        # the Markdown tables of the docs
    python tests/service/hostile.py --update-docs   # write them into docs/reliability.md

Self-contained on purpose (numpy and nibabel only), so it runs as a script."""

from __future__ import annotations

import gzip
import io
import json
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

SHAPE = (16, 16, 12)


def nifti(
    data: np.ndarray | None = None,
    *,
    affine: np.ndarray | None = None,
    version: int = 1,
    compress: bool = True,
    header: dict | None = None,
    raw_fields: dict | None = None,
) -> bytes:
    """A NIfTI file; `header` sets fields through nibabel, `raw_fields` overwrites
    them in the written bytes (values nibabel itself would refuse or fix up)."""
    data = np.full(SHAPE, 100, np.int16) if data is None else data
    cls = nib.Nifti1Image if version == 1 else nib.Nifti2Image
    image = cls(data, np.eye(4) if affine is None else affine)
    for name, value in (header or {}).items():
        image.header[name] = value
    raw = bytearray(image.to_bytes())
    if raw_fields:
        block = nib.Nifti1Header.from_fileobj(io.BytesIO(bytes(raw[:348])), check=False)
        for name, value in raw_fields.items():
            block[name] = value
        raw[:348] = block.binaryblock
    return gzip.compress(bytes(raw), mtime=0) if compress else bytes(raw)


def _with_nan(value: float) -> np.ndarray:
    data = np.zeros(SHAPE, np.float32)
    data[3, 4, 5] = value
    return data


def _gzip_bomb() -> bytes:
    """A valid 8x8x8 volume followed by 200 MB of zeros (~200 kB gzipped)."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as stream:
        stream.write(nifti(np.zeros((8, 8, 8), np.int16), compress=False))
        zeros = bytes(1024 * 1024)
        for _ in range(200):
            stream.write(zeros)
    return out.getvalue()


def _declared(shape: tuple[int, ...], dtype, filler_mb: int = 0) -> bytes:
    """A header declaring `shape`, with `filler_mb` MB of zeros behind it (gzipped)."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header["vox_offset"] = 352
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = compressor.compress(header.binaryblock + b"\0" * 4)
    zeros = bytes(1 << 20)
    out += b"".join(compressor.compress(zeros) for _ in range(filler_mb))
    return out + compressor.flush()


def _with_trailer(nbytes: int) -> bytes:
    """A good plain .nii followed by `nbytes` random bytes."""
    return nifti(compress=False) + np.random.default_rng(0).bytes(nbytes)


def _affine(diagonal=(1.0, 1.0, 1.0), swap: bool = False) -> np.ndarray:
    affine = np.diag([*diagonal, 1.0])
    return affine[[1, 0, 2, 3]] if swap else affine


GOOD = nifti()


@dataclass(frozen=True)
class Case:
    """One hostile request to POST /v1/jobs: `file` goes in the `part` field (the
    other file, if any, is a good one), `form` adds fields; the answer must have
    `status` and a detail containing `detail`."""

    id: str
    sent: str
    build: Callable[[], bytes]
    status: int
    detail: str
    part: str = "image"
    form: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.id}.nii.gz"


def _image(id, sent, build, status, detail, **kw) -> Case:
    return Case(id, sent, build, status, detail, **kw)


CASES: list[Case] = [
    # -- not a volume at all
    _image("random-bytes", "gzip magic, then random bytes", lambda: b"\x1f\x8b" + bytes(range(256)) * 8, 422, "corrupt"),
    _image("plain-text", "a text file", lambda: b"this is not a volume\n" * 100, 422, "not a NIfTI"),
    _image("empty-file", "zero bytes", lambda: b"", 422, "not a NIfTI"),
    _image("truncated-gzip", "the first half of a .nii.gz", lambda: GOOD[: len(GOOD) // 2], 422, "truncated"),
    _image("truncated-data", "a .nii cut inside the voxel data", lambda: nifti(compress=False)[:500], 422, "truncated"),
    _image("nifti-2", "a NIfTI-2 file", lambda: nifti(version=2), 422, "NIfTI-2"),
    # -- not a 3D volume of a supported type
    _image("4d-volume", "a 4D series (8x8x8x2)", lambda: nifti(np.zeros((8, 8, 8, 2), np.int16)), 422, "3D"),
    _image("2d-image", "a 2D image", lambda: nifti(np.zeros((16, 16), np.int16)), 422, "3D"),
    _image("empty-volume", "a 0x8x8 volume", lambda: nifti(np.zeros((0, 8, 8), np.int16)), 422, "empty"),
    _image("complex-voxels", "complex64 voxels", lambda: nifti(np.zeros((8, 8, 8), np.complex64)), 422, "not supported"),
    _image("nan-voxel", "one NaN voxel (float32)", lambda: nifti(_with_nan(np.nan)), 422, "NaN"),
    _image("inf-voxel", "one infinite voxel (float32)", lambda: nifti(_with_nan(np.inf)), 422, "NaN"),
    # -- limits
    _image("too-many-voxels", "65x64x64 voxels (limit 64^3 in the tests)", lambda: nifti(np.zeros((65, 64, 64), np.int16)), 413, "exceed the limit"),
    _image("declared-huge", "a header declaring 4096^3 voxels, 1 kB of data", lambda: _declared((4096, 4096, 4096), np.int16), 413, "exceed the limit"),
    _image("gzip-bomb", "8^3 voxels, then 200 MB of zeros in 200 kB of gzip", _gzip_bomb, 422, "more data than declared"),
    _image("nii-trailer", "a plain .nii followed by 2 MiB of random bytes (1 MiB allowed, as after a .nii.gz's voxels)", lambda: _with_trailer(2 << 20), 422, "more data than declared"),
    _image("declared-float64-bomb", "a header declaring 64^3 float64 (2 MiB, over a 1 MiB volume limit), 1 MB of zeros", lambda: _declared((64, 64, 64), np.float64, 1), 413, "VESSELZIP_MAX_VOLUME_BYTES", form={"limit": "max_volume_bytes"}),
    # -- header geometry
    _image("pixdim-nan", "voxel size (pixdim) NaN", lambda: nifti(raw_fields={"pixdim": [1, np.nan, 1, 1, 1, 1, 1, 1]}), 422, "not finite"),
    _image("pixdim-inf", "voxel size (pixdim) infinite", lambda: nifti(raw_fields={"pixdim": [1, np.inf, 1, 1, 1, 1, 1, 1]}), 422, "not finite"),
    _image("pixdim-zero", "voxel size 0 mm", lambda: nifti(raw_fields={"pixdim": [1, 0, 1, 1, 1, 1, 1, 1]}), 422, "must be between"),
    _image("voxel-1e-6-mm", "1e-6 mm voxels (affine and pixdim): would make filters and resampling unbounded", lambda: nifti(affine=_affine((1e-6,) * 3)), 422, "must be between"),
    _image("voxel-1e6-mm", "1e6 mm voxels", lambda: nifti(affine=_affine((1e6,) * 3)), 422, "must be between"),
    _image("sform-nan", "an sform with NaN", lambda: nifti(raw_fields={"srow_x": [np.nan, 0, 0, 0]}), 422, "sform"),
    _image("sform-inf", "an sform with an infinite offset", lambda: nifti(raw_fields={"srow_y": [0, 1, 0, np.inf]}), 422, "sform"),
    _image("sform-singular", "an sform whose axes collapse (two equal rows)", lambda: nifti(raw_fields={"srow_y": [1, 0, 0, 0]}), 422, "singular"),
    _image("sform-zero", "an all-zero sform", lambda: nifti(raw_fields={"srow_x": [0, 0, 0, 0], "srow_y": [0, 0, 0, 0], "srow_z": [0, 0, 0, 0]}), 422, "sform"),
    _image("qform-nan", "a qform with a NaN quaternion", lambda: nifti(raw_fields={"qform_code": 1, "quatern_b": np.nan}), 422, "qform"),
    _image("vox-offset-nan", "vox_offset NaN", lambda: nifti(raw_fields={"vox_offset": np.nan}), 422, "data offset"),
    _image("vox-offset-inf", "vox_offset infinite", lambda: nifti(raw_fields={"vox_offset": np.inf}), 422, "data offset"),
    _image("vox-offset-1e9", "vox_offset 1e9 (1 GB of padding declared)", lambda: nifti(raw_fields={"vox_offset": 1e9}), 422, "data offset"),
    _image("vox-offset-inside-header", "vox_offset 0 (voxels inside the header)", lambda: nifti(raw_fields={"vox_offset": 0}), 422, "data offset"),
    _image("scl-slope-inf", "intensity scaling scl_slope infinite", lambda: nifti(raw_fields={"scl_slope": np.inf}), 422, "scaling"),
    # -- truths
    _image("truth-other-shape", "a truth of another shape", lambda: nifti(np.zeros((16, 16, 8), np.uint8)), 422, "does not match image shape", part="truth"),
    _image("truth-other-grid", "a truth of the same shape on another grid (3 mm voxels, axes swapped)", lambda: nifti(np.zeros(SHAPE, np.uint8), affine=_affine((3, 3, 3), swap=True)), 422, "another grid", part="truth"),
    _image("truth-sform-nan", "a truth whose sform holds NaN", lambda: nifti(np.zeros(SHAPE, np.uint8), raw_fields={"srow_z": [0, 0, np.nan, 0]}), 422, "truth", part="truth"),
    _image("truth-not-nifti", "a truth that is not NIfTI", lambda: b"not a mask", 422, "truth", part="truth"),
    _image("truth-4d", "a 4D truth", lambda: nifti(np.zeros((8, 8, 8, 2), np.uint8)), 422, "truth", part="truth"),
    _image("truth-trailer", "a plain .nii truth followed by 2 MiB of random bytes", lambda: _with_trailer(2 << 20), 422, "truth: the file holds far more data than declared", part="truth"),
    # -- form fields
    _image("codec-unknown", "codec=gzip", lambda: GOOD, 422, "unknown codec", form={"codec": "gzip"}),
    _image("codec-negative-rate", "codec=zfp:rate=-1", lambda: GOOD, 422, "rate", form={"codec": "zfp:rate=-1"}),
    _image("codec-400-digits", "a zfp rate of 400 digits", lambda: GOOD, 422, "numeric value", form={"codec": "zfp:rate=" + "9" * 400}),
    _image("codec-1e999", "a zfp tolerance of 1e999 (infinite)", lambda: GOOD, 422, "numeric value", form={"codec": "zfp", "mode": "tolerance", "value": "1e999"}),
    _image("codec-unknown-option", "codec=zfp:speed=3", lambda: GOOD, 422, "speed", form={"codec": "zfp:speed=3"}),
    _image("mode-unknown", "mode=fastest", lambda: GOOD, 422, "fastest", form={"codec": "zfp", "mode": "fastest", "value": "1"}),
    _image("value-without-mode", "a value without a mode", lambda: GOOD, 422, "needs a mode", form={"codec": "zfp", "value": "2"}),
    _image("spec-and-mode", "a whole spec and a mode", lambda: GOOD, 422, "not both", form={"codec": "zfp:rate=2", "mode": "rate"}),
    _image("codec-id-option", "an `id` option that would swap the codec", lambda: GOOD, 422, "'id' is not an option", form={"codec": "zfp:id=none"}),
    _image("codec-id-swap", "an `id` option turning `none` into zfp", lambda: GOOD, 422, "'id' is not an option", form={"codec": "none:id=zfp+mode=rate+value=2"}),
    _image("mode-id", "`id` as the mode field", lambda: GOOD, 422, "'id' is not an option", form={"codec": "zfp", "mode": "id", "value": "none"}),
    _image("codec-duplicate-key", "one option twice", lambda: GOOD, 422, "given twice", form={"codec": "zfp:rate=2+rate=3"}),
    _image("codec-mode-twice", "a mode as key and as mode=", lambda: GOOD, 422, "one zfp mode", form={"codec": "zfp:rate=2+mode=tolerance"}),
    _image("codec-value-twice", "a mode's value as rate= and as value=", lambda: GOOD, 422, "not as a separate value", form={"codec": "zfp:rate=2+value=3"}),
    _image("reversible-with-value", "a value for the reversible mode", lambda: GOOD, 422, "takes no value", form={"codec": "zfp:reversible=1"}),
    _image("mode-reversible-with-value", "mode reversible with a value", lambda: GOOD, 422, "takes no value", form={"codec": "zfp", "mode": "reversible", "value": "1"}),
    _image("codec-arabic-digit", "a rate in Arabic-Indic digits (int() reads it as 3)", lambda: GOOD, 422, "numeric value", form={"codec": "zfp:rate=\u0663"}),
    _image("value-underscore", "a value with an underscore (int() reads 1_6 as 16)", lambda: GOOD, 422, "numeric value", form={"codec": "zfp", "mode": "rate", "value": "1_6"}),
    _image("codec-inf-word", "a tolerance of `inf`", lambda: GOOD, 422, "numeric value", form={"codec": "zfp:tolerance=inf"}),
    _image("codec-100k", "a codec field of 100 000 characters (the answer quotes 80)", lambda: GOOD, 422, "unknown codec", form={"codec": "x" * 100_000}),
    _image("value-100k", "a value field of 100 000 characters (the answer quotes 80)", lambda: GOOD, 422, "numeric value", form={"codec": "zfp", "mode": "rate", "value": "x" * 100_000}),
    _image("model-unknown", "model=resnet-9000", lambda: GOOD, 422, "unknown model", form={"model": "resnet-9000"}),
    _image("model-not-loadable", "model=mvn-checkpoint with no checkpoint configured (no worker can load it)", lambda: GOOD, 422, "unknown model", form={"model": "mvn-checkpoint"}),
    _image("too-thin-1x64x64", "a 1x64x64 volume for mvn-small", lambda: nifti(np.full((1, 64, 64), 100, np.int16)), 422, "at least 4 voxels along every axis", form={"model": "mvn-small"}),
    _image("too-thin-64x64x1", "a 64x64x1 volume for mvn-small", lambda: nifti(np.full((64, 64, 1), 100, np.int16)), 422, "at least 4 voxels along every axis", form={"model": "mvn-small"}),
    _image("too-small-2x2x2", "a 2x2x2 volume for mvn-small", lambda: nifti(np.full((2, 2, 2), 100, np.int16)), 422, "at least 4 voxels along every axis", form={"model": "mvn-small"}),
    _image("a-line-1x1x32767", "a 1x1x32767 volume for mvn-small-heads", lambda: nifti(np.full((1, 1, 32767), 100, np.int16)), 422, "at least 4 voxels along every axis", form={"model": "mvn-small-heads"}),
]  # fmt: skip

BY_ID = {case.id: case for case in CASES}


def request_parts(case: Case) -> tuple[dict[str, tuple[str, bytes]], dict[str, str]]:
    """(files, form) for POST /v1/jobs; `limit` in a case's form is for the test only."""
    files = {"image": ("volume.nii.gz", GOOD)}
    files[case.part] = (case.name, case.build())
    if case.part == "truth":
        files["image"] = ("volume.nii.gz", GOOD)
    form = {k: v for k, v in case.form.items() if k != "limit"}
    return files, form


def write_corpus(out_dir: Path) -> Path:
    """One file per case and cases.json: what to send, where, and what must come back."""
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = []
    for case in CASES:
        (out_dir / case.name).write_bytes(case.build())
        manifest.append(
            {
                "id": case.id,
                "file": case.name,
                "part": case.part,
                "form": case.form,
                "sent": case.sent,
                "status": case.status,
                "detail_contains": case.detail,
            }
        )
    path = out_dir / "cases.json"
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    return path


#: Faults the real-process tests cause, as docs/reliability.md lists them. Each row
#: names the test (in tests/service/) that causes it and asserts the outcome; a test
#: fails when a named test does not exist.
def _fault(fault, done, answer, stored, worker, test) -> dict[str, str]:
    return dict(fault=fault, done=done, answer=answer, stored=stored, worker=worker, test=test)


FAULTS: list[dict[str, str]] = [
    # -- requests
    _fault("body over the upload limit", "a body 1 byte over `VESSELZIP_MAX_UPLOAD_BYTES`, with and without Content-Length", "413 while streaming", "nothing", "never sees it", "test_body_over_the_upload_limit_is_refused_while_streaming"),
    _fault("stalled upload", "headers and part of a body, then silence", "408 after `VESSELZIP_BODY_READ_TIMEOUT_S`, connection closed; the gateway keeps serving", "nothing", "never sees it", "test_a_stalled_upload_is_cut_off_with_408"),
    _fault("non-ASCII API key", "`X-API-Key` with UTF-8 bytes on jobs, datasets, sweeps", "401", "nothing", "never sees it", "test_a_non_ascii_api_key_is_a_401_not_a_500"),
    _fault("keys set after use", "a job, dataset and sweep made while the API was open, then read, extended and deleted with a key", "403 for all three (listed for no key); the open gateway still serves them", "nothing lost", "unaffected", "test_one_access_rule_for_jobs_datasets_and_sweeps"),
    _fault("another key's job", "read, mask, blob, delete of alice's job with bob's key or none", "403 / 401", "nothing lost", "unaffected", "test_api_keys"),
    _fault("another key's dataset or sweep", "read, add a volume, sweep, delete with bob's key", "403 / 401", "nothing lost", "unaffected", "test_datasets_and_sweeps_belong_to_their_api_key"),
    _fault("racing idempotent posts", "3 simultaneous dataset posts with one `Idempotency-Key`, then a replay", "one 201, two 200, all with every volume; the replay too", "one whole dataset", "never sees it", "test_racing_dataset_posts_with_one_idempotency_key_make_one_whole_dataset"),
    _fault("absurd numbers in a sweep grid", "codec values of 400 and 5000 digits, 1e999, NaN", "422", "nothing", "never sees it", "test_a_sweep_grid_with_absurd_numbers_is_a_422"),
    _fault("store not writable", "the store's folder replaced by a file (as a full or read-only disk), then a job and a dataset posted", "503 naming the store, no server path; `/v1/ready` 503", "nothing new; what was stored is intact and served again once the store is back", "unaffected", "test_a_store_that_is_not_writable_answers_503_and_keeps_what_it_had"),
    # -- jobs and workers
    _fault("queued job cancelled", "DELETE of a job waiting in its queue", "200 `cancelled`; later GET shows `cancelled`", "its blob and truth removed", "never runs it", "test_a_queued_job_reports_its_position_and_can_be_cancelled"),
    _fault("running job cancelled", "DELETE while a worker runs the job", "200 `cancelled`", "its files removed", "drops it at its next progress report, takes the next job", "test_cancelling_a_running_job_stops_it_and_removes_its_files"),
    _fault("worker killed mid-job", "SIGKILL to the worker during a job", "job `queued` again with a note, then `finished` (attempt 2)", "nothing lost", "the next worker runs it", "test_killed_worker_job_is_retried_and_bad_input_is_not"),
    _fault("corrupt blob in the store", "a byte of a stored blob flipped before its job runs", "`failed`: checksum mismatch, not retried", "the failure in results/", "free for the next job", "test_killed_worker_job_is_retried_and_bad_input_is_not"),
    _fault("worker killed, no retries left", "SIGKILL during a job with `VESSELZIP_JOB_RETRIES=0`", "`failed`: the worker stopped responding during <stage> (attempt 1/1)", "the failure in results/", "gone; the job is never left `running`", "test_killed_worker_without_retries_fails_with_a_reason"),
    _fault("job past its time limit", "a job longer than `VESSELZIP_JOB_TIMEOUT_S` (1 s)", "`failed`: timed out, not retried", "the failure in results/", "free for the next job", "test_killed_worker_without_retries_fails_with_a_reason"),
    _fault("Redis stopped, restarted, flushed", "Redis stopped during service, started again, later FLUSHALL", "503 while down (nothing stored); finished results still served after the flush", "nothing finished lost", "reconnects and registers again by itself", "test_restarted_and_flushed_redis"),
    _fault("worker killed mid-sweep, Redis flushed", "SIGKILL to the worker during a sweep, then FLUSHALL", "sweep finishes; tables the same after the flush; re-POST reuses every result", "nothing lost", "the next worker runs the job", "test_sweep_survives_a_killed_worker_and_a_redis_flush"),
    _fault("cancelled job stuck in native code", "DELETE while the Frangi filter computes for minutes without a progress report", "200 `cancelled`", "its blob, truth, mask and result removed; never retried", "exits (status 75) about 3.5 s after the DELETE; restarted by its supervisor, it takes the next job", "test_cancel_stops_a_job_stuck_in_a_long_native_call"),
    _fault("transient store fault", "a stored blob unreadable (a folder), 2 retries, backoff 2 s", "`queued` between attempts, then `failed` with the reason (attempt 3/3) and a note per retry", "the failure recorded", "free; attempts about 2 s and 4 s apart", "test_retries_wait_a_growing_backoff"),
    _fault("scheduler's worker killed", "SIGKILL to the worker holding RQ's scheduler during a job", "`finished` on attempt 2", "nothing lost", "its scheduler stops with it; another worker takes over and runs the retry", "test_retry_runs_when_the_worker_running_the_scheduler_dies"),
    _fault("store stops taking writes mid-job", "files where masks/ and results/ go", "`failed` with the store's reason and a note that the result could not be written; a corrupt-blob job fails at once", "the outcome in RQ's job (its meta, with its TTL); the results/ copy cannot be written", "free for the next job", "test_failures_are_recorded_when_the_store_cannot_write"),
    _fault("jobs this version cannot read", "an RQ job whose spec is invalid, one whose payload is not JSON, one whose entry RQ cannot load", "`failed`: the job cannot be read by this version; not retried; the last one answers so too and its DELETE takes it out of its queue", "RQ's job ended, with its TTL; the last one removed", "keeps running, finishes the next job", "test_jobs_the_worker_cannot_read_fail_with_a_reason"),
    # -- a job's life in Redis
    _fault("failed jobs deleted", "a job cancelled in its queue, one finished, one failed at once (corrupt blob), one failed after its retry (I/O fault); then DELETE of each ended one", "`cancelled`, `finished`, `failed`, `failed` (attempt 2/2); then 200 and 404", "every key and registry entry RQ holds of an ended job expires within `VESSELZIP_RECORD_TTL_S`; after DELETE nothing of it is left in Redis or the store; the cancelled one's canceled-registry entry goes once its data expired", "free for the next job", "test_what_rq_keeps_of_a_job_expires_and_deleting_it_leaves_nothing"),
    _fault("input the model cannot process", "a float64 volume of ±1e308 for `frangi` (its eigen-solver fails), 2 retries allowed", "`failed` at attempt 1: the reason and `not retried`", "the failure in results/", "free for the next job", "test_a_failure_the_same_input_would_repeat_is_not_retried"),
    _fault("volumes and models a worker cannot take", "1×64×64, 64×64×1, 2×2×2 and 1×1×200 volumes for `mvn-small`; `mvn-checkpoint` without a checkpoint", "422 at upload: `at least 4 voxels along every axis` / `no worker offers it`; `GET /v1/models` lists only what loaded", "nothing", "never sees them", "test_input_a_model_cannot_take_is_refused_at_upload"),
    # -- the embedded service (`vesselzip serve`)
    _fault("serve's worker killed", "SIGKILL to a worker of `vesselzip serve`", "ready again within seconds", "nothing lost", "replaced by serve", "test_serve_restarts_a_killed_worker_and_stops_everything_on_ctrl_c"),
    _fault("serve stopped by SIGTERM", "SIGTERM to `vesselzip serve`", "the service goes away", "data kept; no temp folder", "workers and embedded Redis stop with it", "test_serve_stops_its_workers_and_redis_on_sigterm"),
    _fault("embedded Redis killed", "SIGKILL to serve's redis-server", "`/v1/ready` 503 for a second or two, then 200; a job posted afterwards finishes", "nothing lost (append-only file, same socket)", "reconnects by itself; serve started Redis again", "test_serve_restarts_its_killed_embedded_redis_at_the_same_url"),
    _fault("serve killed", "SIGKILL to `vesselzip serve` (a store path too long for a socket, so the temp-folder fallback is used)", "the service goes away", "Redis saved and stopped by its keeper; no temp folder left", "exits within seconds; no process of that serve remains", "test_nothing_outlives_a_sigkilled_serve"),
    _fault("serve stopped normally", "SIGTERM to a gateway-only `vesselzip serve`", "the service goes away", "data kept in the store's redis/ folder; no temp folder", "none started", "test_a_normal_stop_leaves_no_temp_folder"),
    # -- datasets under racing requests and caps
    _fault("adds racing for one volume name", "two different 64³ volumes added at once under one name, 5 rounds", "one 201, one 409; the volume's `image_sha256` is the winner's", "the winner's image only", "never sees it", "test_two_adds_under_one_volume_name_give_one_201_and_one_409"),
    _fault("dataset deleted during adds", "4 adds at once and a DELETE 0–100 ms later, 8 rounds; then the dataset's `Idempotency-Key` again", "each add 201 (counted in `volumes_deleted`) or 404; the key then makes a new, empty dataset (201)", "nothing of the dataset, its adds or its index entry", "never sees it", "test_a_dataset_deleted_during_adds_leaves_nothing_and_its_key_brings_nothing_back"),
    _fault("over the volume and sweep-job caps", "3 images in one create, a third add, a sweep of 6 jobs (caps: 2 volumes, 4 jobs)", "422 naming `VESSELZIP_MAX_DATASET_VOLUMES` / `VESSELZIP_MAX_SWEEP_JOBS`; 4 jobs: 202", "nothing of a refused request", "never sees a refused sweep", "test_volume_and_sweep_job_caps_are_422s_that_name_the_limit"),
    _fault("adds racing for the last place", "4 adds at once to a dataset one volume under its cap", "one 201, three 422", "exactly the cap", "never sees it", "test_adds_racing_for_the_last_place_never_pass_the_volume_cap"),
    # -- an S3 store (a local S3 server the tests start)
    _fault("S3 server stopped mid-job", "the server stopped while a job runs (1 retry, `AWS_MAX_ATTEMPTS=2`), started again later", "`failed` with the store's reason at attempt 2/2; posts 503 and `/v1/ready` 503 `Could not connect` while it is down; ready again once it is back, and a new job finishes", "no mask or result of the failed job (GET mask: 409); everything stored before is there", "free for the next job", "test_a_store_that_goes_away_mid_job_ends_jobs_with_a_reason_and_comes_back"),
    _fault("S3 server slow and answering errors", "every request 0.1 s late and every third one answered 503 SlowDown (a real proxy in front of the server)", "the job `finished` at attempt 1: each failed request retried with backoff; the mask downloads whole", "everything, once", "unaffected", "test_jobs_finish_through_a_slow_store_that_answers_errors"),
    _fault("bucket missing", "`VESSELZIP_STORE_URL` naming a bucket that does not exist", "the gateway serves and `/v1/ready` 503 `S3 bucket 'NAME' does not exist`; `vesselzip worker` exits with `cannot start:` and the same reason", "nothing", "does not start", "test_a_missing_bucket_is_named_at_start_and_by_ready"),
    _fault("worker host lost, S3 store", "SIGKILL to one of two workers, each in its own empty folder, sharing only Redis and the bucket, during a sweep", "sweep `finished`; the killed job `finished` at attempt 2 on the other host", "every object in the bucket, nothing of the store on any host's disk", "the other worker runs the job", "test_hosts_sharing_only_redis_and_the_bucket_finish_a_sweep_through_a_killed_worker"),
]  # fmt: skip


def uploads_table() -> str:
    rows = [
        "| case | what was sent | what came back | stored | worker |",
        "|---|---|---|---|---|",
    ]
    for case in CASES:
        where = "" if case.part == "image" else f" (as the {case.part})"
        form = {k: v for k, v in case.form.items() if k != "limit"}
        fields = "".join(f", `{k}={_short(v)}`" for k, v in form.items())
        rows.append(
            f"| `{case.id}` | {case.sent}{where}{fields} | {case.status}, "
            f"detail contains “{case.detail}” | nothing | never sees it |"
        )
    return "\n".join(rows)


def faults_table() -> str:
    rows = [
        "| fault | what was done | what came back | stored / lost | worker | test |",
        "|---|---|---|---|---|---|",
    ]
    for fault in FAULTS:
        rows.append(
            f"| {fault['fault']} | {fault['done']} | {fault['answer']} | {fault['stored']} "
            f"| {fault['worker']} | `{fault['test']}` |"
        )
    return "\n".join(rows)


DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
TABLES = {"uploads": uploads_table, "faults": faults_table}


def documented_tables(text: str) -> dict[str, str]:
    """The generated tables as the document holds them, by name."""
    found = {}
    for name in TABLES:
        start, end = f"<!-- {name} table: generated -->", f"<!-- end of {name} table -->"
        if start in text and end in text:
            found[name] = text.split(start, 1)[1].split(end, 1)[0].strip()
    return found


def update_docs(path: Path) -> Path:
    """Rewrite the generated tables in the document from this module."""
    text = path.read_text()
    for name, table in TABLES.items():
        start, end = f"<!-- {name} table: generated -->", f"<!-- end of {name} table -->"
        head, rest = text.split(start, 1)
        text = f"{head}{start}\n{table()}\n{end}{rest.split(end, 1)[1]}"
    path.write_text(text)
    return path


def _short(value: str) -> str:
    return value if len(value) <= 24 else f"{value[:16]}… ({len(value)} chars)"


if __name__ == "__main__":
    if sys.argv[1:] == ["--tables"]:
        print(uploads_table() + "\n\n" + faults_table())
    elif sys.argv[1:] == ["--update-docs"]:
        print(update_docs(DOC))
    elif len(sys.argv) == 2:
        print(write_corpus(Path(sys.argv[1])))
    else:
        sys.exit("usage: python tests/service/hostile.py OUT_DIR | --tables | --update-docs")
