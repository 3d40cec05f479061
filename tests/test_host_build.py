"""The build manifest (kernels/manifest.py) against what it describes: setup.py's extensions, the #include lines of
the sources, the generated layout header, and the loader's refusal of a library built with another layout."""
import re
import runpy
import shutil
from pathlib import Path

import pytest

from fastgsl import _native
from fastgsl.kernels import manifest
from fastgsl.ops.voxel_stats import host, layout

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "kernels"


def setup_extensions():
    """setup.py's extension list, built without running setup()."""
    return runpy.run_path(str(ROOT / "setup.py"), run_name="not_main")["host_extensions"]()


def test_setup_builds_exactly_the_manifest():
    exts = {e.name: e for e in setup_extensions()}
    assert sorted(exts) == sorted(lib.module for lib in manifest.LIBRARIES)
    for lib in manifest.LIBRARIES:
        e = exts[lib.module]
        assert e.sources == [f"kernels/{lib.main}"]
        assert sorted(e.depends + e.sources) == sorted(f"kernels/{n}" for n in lib.sources)
        assert e.extra_compile_args == list(manifest.CXX_FLAGS)
        # the digest setup.py compiles in is the one the loader expects from the same sources
        loader = _native.HostLibrary(lib, lambda x: x, kernel_dir=KERNELS)
        assert e.define_macros == [(lib.hash_macro, f'"{loader.digest()}"')]


def includes(name: str, seen=None) -> set:
    """The files of kernels/ that ``name`` includes, transitively (quoted #include only; system headers are not
    part of the digest)."""
    seen = set() if seen is None else seen
    seen.add(name)
    for inc in re.findall(r'^\s*#\s*include\s+"([^"]+)"', (KERNELS / name).read_text(), re.M):
        if inc not in seen and (KERNELS / inc).exists():
            includes(inc, seen)
    return seen


@pytest.mark.parametrize("lib", manifest.LIBRARIES, ids=lambda lib: lib.stem)
def test_digest_covers_every_included_source(lib):
    """A header the build includes but the digest omits would let a stale library pass as current."""
    assert includes(lib.main) == set(lib.sources)


def test_layout_header_is_generated_from_the_python_layout():
    assert (KERNELS / layout.HEADER_NAME).read_text() == layout.cxx_header(), \
        "kernels/voxel_stats_layout.h is stale: run python -m fastgsl.ops.voxel_stats.layout"


def test_loaded_library_reports_the_python_layout():
    lib, where = host.host_library.load()
    if lib is None:
        pytest.skip(f"the host statistics library is unavailable: {where}")
    assert lib.fastgsl_stats_layout().decode() == layout.LAYOUT_SIGNATURE


def test_a_library_built_with_another_layout_is_refused(tmp_path, monkeypatch):
    """Swap two stats in the header only (as a reorder without regenerating would): the loader must refuse it."""
    kdir = tmp_path / "kernels"
    shutil.copytree(KERNELS, kdir, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    header = (kdir / layout.HEADER_NAME).read_text()
    swapped = header.replace("S_I = 0, S_SP = 1", "S_I = 1, S_SP = 0").replace('"I,SP,', '"SP,I,')
    assert swapped != header
    (kdir / layout.HEADER_NAME).write_text(swapped)
    monkeypatch.setenv("FASTGSL_CACHE_DIR", str(tmp_path / "cache"))
    # another stem, so that the package's own (correct) build cannot stand in for the refused one
    spec = manifest.STATS._replace(stem="_stats_host_reordered_for_tests")
    lib, reason = _native.HostLibrary(spec, host._bind, kernel_dir=kdir).load()
    if "no C++ compiler" in reason:
        pytest.skip(reason)
    assert lib is None and "another stats layout" in reason
