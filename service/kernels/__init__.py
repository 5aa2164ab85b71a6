"""The scorer's fused video-block kernel: an ONNX Runtime custom operator (torch-free).

``segint.VideoBlock`` (``video_block.cpp``, ``custom_op.cpp``) runs one video block of the
served scorer (`export.fused.FusedVideoBlock`, deferred softmax, d = 32, 4 heads, FFN 64) as a
single pass per candidate instead of ONNX Runtime's ~30 operators: the attention's queries a
vector at a time (16 in AVX-512 registers, 8 in AVX2's), only each candidate's valid keys, no
intermediate tensors. `export.kernel` writes ``scorer.kernel.onnx`` (each block one node, same
inputs and outputs as ``scorer.onnx``); the ranker opens it on CPU when this library is built
and the CPU has AVX-512F or AVX2 + FMA, and the exported graph otherwise (docs/serving.md,
rounds 11 and 12).

The library holds the kernel twice, compiled for AVX-512F and for AVX2 + FMA; registering it
with a session picks the widest this CPU has (`isa`). ``SEGINT_KERNEL_ISA=avx512|avx2`` asks for
one (the tests run the AVX2 kernel on AVX-512 CPUs this way); a CPU without it fails the
registration and the ranker serves the exported graph.

Building (``python -m service.kernels build``, run by ``make install``) needs g++ and ONNX
Runtime's C/C++ API headers. The onnxruntime wheel ships none, so they come from Debian's
``libonnxruntime-dev`` package (pinned by sha256, API version 21; a newer runtime serves older
API versions), fetched once into ``build/kernels/``."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import platform
import shutil
import subprocess
import tarfile
import urllib.request
from pathlib import Path

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
LIBRARY = ROOT / "build" / "kernels" / "segint_ops.so"  # where `build` writes the library
HEADERS_DEB = (
    "http://deb.debian.org/debian/pool/main/o/onnxruntime/"
    "libonnxruntime-dev_1.21.0+dfsg-1_amd64.deb"
)
HEADERS_SHA256 = "14f7d959d5deacbcf1504830d4189f91fc67382b399ed9ae9d3aa9c4050ced08"
HEADERS = ("onnxruntime_c_api.h", "onnxruntime_cxx_api.h", "onnxruntime_cxx_inline.h",
           "onnxruntime_float16.h", "onnxruntime_lite_custom_op.h")  # fmt: skip
# The kernel's builds: instruction set -> its compile flags (video_block.cpp once each, the
# operator's code for baseline x86-64). -ffast-math lets GCC vectorise GELU's erf through
# glibc's vector math library. It is a compile flag only: linked with it, GCC 12 adds
# crtfastmath.o, whose constructor turns on flush-to-zero for the process that loads the
# library (every later numpy result with it).
CXXFLAGS = ("-O3", "-std=c++17", "-ffast-math", "-fPIC")
ISA_FLAGS = {
    "avx512": ("-DSEGINT_WIDTH=16", "-mavx512f", "-mfma"),
    "avx2": ("-DSEGINT_WIDTH=8", "-mavx2", "-mfma"),
}
ISA_ENV = "SEGINT_KERNEL_ISA"  # auto (default) | avx512 | avx2: which build a session runs


def cpu_isas(flags: str | None = None) -> list[str]:
    """The kernel builds this CPU runs, widest first (``flags``: /proc/cpuinfo's text)."""
    if flags is None:
        if platform.machine() not in ("x86_64", "AMD64"):
            return []
        try:
            flags = Path("/proc/cpuinfo").read_text()
        except OSError:
            return []
    words = set(flags.split())
    return [isa for isa, need in (("avx512", {"avx512f"}), ("avx2", {"avx2", "fma"}))
            if need <= words]  # fmt: skip


def isa() -> str | None:
    """The build a session runs here (`ISA_ENV`, else the widest), None when none runs."""
    want = os.environ.get(ISA_ENV) or "auto"
    have = cpu_isas()
    if want == "auto":
        return have[0] if have else None
    return want if want in have else None


def cpu_supported() -> bool:
    """Whether this CPU runs the kernel (x86-64 with AVX-512F or AVX2 + FMA)."""
    return bool(cpu_isas())


def library(path: str | Path | None = None) -> Path | None:
    """The built library (``path``, else `LIBRARY`) when this CPU can run it, else None."""
    lib = Path(path) if path is not None else LIBRARY
    return lib if lib.is_file() and isa() is not None else None


def fetch_headers(folder: Path) -> Path:
    """ONNX Runtime's API headers in ``folder`` (fetched from Debian once, sha256-checked)."""
    if all((folder / h).is_file() for h in HEADERS):
        return folder
    with urllib.request.urlopen(HEADERS_DEB, timeout=60) as r:
        deb = r.read()
    if hashlib.sha256(deb).hexdigest() != HEADERS_SHA256:
        raise RuntimeError(f"{HEADERS_DEB}: sha256 differs from the pinned one")
    data = _ar_member(deb, "data.tar")
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if name in HEADERS and member.isfile():
                f = tar.extractfile(member)
                assert f is not None
                (folder / name).write_bytes(f.read())
    missing = [h for h in HEADERS if not (folder / h).is_file()]
    if missing:
        raise RuntimeError(f"{HEADERS_DEB} has no {missing}")
    return folder


def _ar_member(archive: bytes, prefix: str) -> bytes:
    """The first member of an ar archive (a .deb) whose name starts with ``prefix``."""
    if not archive.startswith(b"!<arch>\n"):
        raise RuntimeError("not an ar archive")
    at = 8
    while at + 60 <= len(archive):
        header = archive[at : at + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        body = archive[at + 60 : at + 60 + size]
        if name.startswith(prefix):
            return body
        at += 60 + size + (size % 2)
    raise RuntimeError(f"no {prefix}* member")


def build(out: Path = LIBRARY, cxx: str | None = None) -> Path | None:
    """Compile the library to ``out``; None (with the reason logged) where it cannot be built
    here: not x86-64, or no C++ compiler."""
    if platform.machine() not in ("x86_64", "AMD64"):
        log.warning("segint kernels: not built (x86-64 only, this is %s)", platform.machine())
        return None
    cxx = cxx or os.environ.get("CXX") or shutil.which("g++")
    if cxx is None:
        log.warning("segint kernels: not built (no C++ compiler; set CXX)")
        return None
    headers = fetch_headers(out.parent / "onnxruntime-headers")
    tmp = out.with_suffix(".tmp.so")
    base = ("-std=c++17", "-fPIC")
    units = [  # (object, source, compile flags)
        *((isa, "video_block.cpp", (*CXXFLAGS, *flags)) for isa, flags in ISA_FLAGS.items()),
        ("heads", "heads.cpp", ("-O3", *base, "-ffp-contract=off")),  # scalar, IEEE
        ("response", "response.cpp", ("-O2", *base)),  # the default /score JSON
        ("plan", "plan.cpp", ("-O2", *base)),  # N, vocabulary rows, bucket plan
        ("op", "custom_op.cpp", (*CXXFLAGS, f"-I{headers}")),
    ]
    objects = []
    try:
        for name, source, flags in units:
            obj = out.with_suffix(f".{name}.o")
            subprocess.run([cxx, *flags, "-c", str(HERE / source), "-o", str(obj)], check=True)
            objects.append(obj)
        subprocess.run(
            [cxx, "-shared", *map(str, objects), "-o", str(tmp), "-lmvec", "-lm"], check=True
        )
        os.replace(tmp, out)
    finally:
        for obj in objects:
            obj.unlink(missing_ok=True)
    return out
