"""The CPU-side logic of ``python -m benchmarks.gpu_suite``: arguments, reports, verdicts, peers, isolation, deadline.

The GPU steps themselves need a CUDA device; here they are replaced by given results or fake runners.
"""
import json
import sys
import time

import pytest
import torch

from benchmarks import gpu_suite as G


def _args(*argv):
    return G.parse_args(list(argv))


# ------------------------------------------------------------------------------------------------ arguments
def test_arguments_defaults_and_options(tmp_path):
    a = _args()
    assert (a.deadline, a.skip, a.quick, a.dry_run, a.tests) == (G.DEFAULT_DEADLINE, [], False, False, "cuda")
    assert a.out.endswith("benchmarks/results")
    a = _args("--out", str(tmp_path), "--skip", "edt", "train", "--deadline", "90", "--quick", "--tests", "all")
    assert (a.out, a.skip, a.deadline, a.quick, a.tests) == (str(tmp_path), ["edt", "train"], 90.0, True, "all")
    assert sum(G.BUDGETS.values()) < G.DEFAULT_DEADLINE and set(G.BUDGETS) == set(G.STEPS)


@pytest.mark.parametrize("argv", [["--skip", "nonsense"], ["--deadline", "0"], ["--deadline", "-5"],
                                  ["--tests", "some"]])
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as e:
        G.parse_args(argv)
    assert e.value.code == 2
    assert "error" in capsys.readouterr().err


def test_without_cuda_the_suite_refuses(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert G.main(["--out", str(tmp_path)]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------ dry run
def test_dry_run_end_to_end(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert G.main(["--dry-run", "--out", str(tmp_path), "--skip", "train"]) == 0
    mds, jss = list(tmp_path.glob("gpu_dryrun_*.md")), list(tmp_path.glob("gpu_dryrun_*.json"))
    assert len(mds) == 1 and len(jss) == 1
    rep = json.loads(jss[0].read_text())
    assert rep["dry_run"] is True and rep["environment"]["gpu"] == "none (no CUDA device)"
    assert {s: r["status"] for s, r in rep["steps"].items()} == {
        "tests": "not run", "losses": "not run", "edt": "not run", "metrics": "not run", "train": "skipped"}
    assert [v["verdict"] for v in rep["verdicts"]] == ["not measured"] * len(G.TARGETS)
    assert rep["environment"]["peers"]["CuPy"]["status"] in ("present", "absent")
    md = mds[0].read_text()
    assert "| (this process) | MIST |" in md
    assert "Dry run: nothing was measured" in md and md.count("**not measured**") == len(G.TARGETS)
    for step in G.STEPS:
        assert f"| {step} |" in md


# ------------------------------------------------------------------------------------------------ reports
ENV = {"gpu": "NVIDIA H200", "driver": "580.1", "torch": "2.11.0", "triton": "3.6.0", "cupy": "14.2.0",
       "torch_cuda": "13.0", "python": "3.12.3"}


def _given_results(mist_ms=10.0, itk_ms=1.5, monai_on_gpu=False, tests_failed=0):
    return {
        "tests": {"status": "failed" if tests_failed else "ok", "seconds": 50.0, "budget_s": 180,
                  "reason": f"{tests_failed} failed, 0 errors" if tests_failed else None,
                  "data": {"tests": 10, "passed": 9 - tests_failed, "failed": tests_failed, "errors": 0,
                           "skipped": 1, "mode": "cuda", "runs": [{"selection": "triton", "status": "ran", "rc": 0,
                                                                    "seconds": 40.0, "passed": 9, "failed": 0,
                                                                    "errors": 0, "skipped": 1}],
                           "failures": [f"FAILED t::x{i}" for i in range(tests_failed)],
                           "skip_reasons": {"needs nvcc": 1}}},
        "losses": {"status": "ok", "seconds": 20.0, "budget_s": 60,
                   "peers": {"MONAI": {"status": "present", "version": "1.6.1"},
                             "MIST": {"status": "present", "version": "2.3.0"}},
                   "data": {"workload": "2x4x128x128x128", "bytes_moved": 4e8, "fwd_B_per_voxel": 40,
                            "bwd_B_per_voxel": 56, "roofline_Bps": 4.8e12, "roofline_us": 84.0, "copy_ms": 0.1,
                            "copy_GBps": 4000.0, "fastgsl_ms": 0.5, "mist_ms": mist_ms,
                            "fastgsl": {"roofline_pct": 85.0},
                            "impls": {"fastgsl DiceCE+GSL": {"ms": 0.5, "GBps": 4000.0, "roofline_pct": 85.0,
                                                             "copy_pct": 20.0, "peak_extra_MiB": 30.0,
                                                             "engines": ["triton"]},
                                      "MIST GenSurfLoss": {"ms": mist_ms, "peak_extra_MiB": 400.0, "engines": []}}}},
        "edt": {"status": "ok", "seconds": 5.0, "budget_s": 40, "peers": {"CuPy": {"status": "present",
                                                                              "version": "14.2.0"}},
                "data": {"workload": "2x4x128^3 labels (8 maps)", "engine": ["cupy"],
                         "fastgsl_itk": {"median_ms": itk_ms, "min_ms": itk_ms}, "fastgsl_itk_ms": itk_ms,
                         "fastgsl_edt": {"median_ms": 1.0, "min_ms": 1.0}, "fastgsl_edt_ms": 1.0,
                         "cupy_loop": {"median_ms": 6.0, "min_ms": 6.0}, "cupy_loop_ms": 6.0,
                         "max_abs_diff_vs_cupy": 0.0}},
        "metrics": {"status": "ok", "seconds": 30.0, "budget_s": 75,
                    "peers": {"MONAI": {"status": "present", "version": "1.6.1"},
                              "cuCIM": {"status": "absent", "reason": "ModuleNotFoundError: No module named 'cucim'"}},
                    "data": {"monai_on_gpu": monai_on_gpu, "monai_engine": "CPU: no cuCIM", "spacing": [1, 1, 1],
                             "min_ratio_vs_monai": 25.0,
                             "rows": [{"workload": "2x3x128x128x128", "metric": "hd95", "fastgsl_ms": 2.0,
                                       "monai_ms": 50.0, "monai_over_fastgsl": 25.0, "max_abs_diff_vs_monai": 0.0,
                                       "distances": {"fastgsl": ["dense"]}}]}},
        "train": {"status": "error", "seconds": 1.0, "budget_s": 90, "reason": "the training script needs nibabel",
                  "peers": {"nibabel": {"status": "absent", "reason": "ModuleNotFoundError: nibabel"}}, "data": {}},
    }


def _by_step(rows):
    return {(r["step"], r["target"]): r for r in rows}


def test_verdicts_met_not_met_not_measured():
    rows = G.verdicts(_given_results())
    got = [(r["step"], r["verdict"]) for r in rows]
    assert got == [("losses", "met"), ("losses", "met"), ("edt", "not met"), ("edt", "met"),
                   ("metrics", "not measured")]
    assert rows[1]["value"] == pytest.approx(20.0) and rows[3]["value"] == pytest.approx(6.0)
    assert "did not run on the GPU" in rows[4]["why"]
    rows = G.verdicts(_given_results(mist_ms=4.0, itk_ms=1.0, monai_on_gpu=True))
    assert [r["verdict"] for r in rows] == ["met", "not met", "met", "met", "met"]   # 1.0 ms <= 1 ms is met
    assert rows[4]["value"] == 25.0


def test_a_step_that_did_not_finish_gives_not_measured():
    res = _given_results()
    res["losses"] = {"status": "timeout", "reason": "killed after its budget of 60 s"}
    res.pop("edt")
    rows = G.verdicts(res)
    assert [r["verdict"] for r in rows[:4]] == ["not measured"] * 4
    assert "timeout" in rows[0]["why"] and "not in the results" in rows[2]["why"]


def test_report_markdown_and_json(tmp_path):
    res = _given_results(tests_failed=2)
    md, js = G.write_report(res, ENV, _args("--out", str(tmp_path)), tmp_path, "20260101T000000Z", 123.4,
                            "python -m benchmarks.gpu_suite")
    assert md.name == "gpu_20260101T000000Z.md" and js.name == "gpu_20260101T000000Z.json"
    rep = json.loads(js.read_text())
    assert rep["environment"]["gpu"] == "NVIDIA H200" and rep["steps"]["tests"]["data"]["failed"] == 2
    assert [v["verdict"] for v in rep["verdicts"]] == ["met", "met", "not met", "met", "not measured"]
    text = md.read_text()
    assert "GPU: **NVIDIA H200**" in text and "| driver | 580.1 |" in text and "| cupy | 14.2.0 |" in text
    assert "| tests | failed | 50 | 180 | 2 failed, 0 errors |" in text
    assert "- `FAILED t::x0`" in text and "- `FAILED t::x1`" in text and "1 x needs nvcc" in text
    assert "| composite loss speed-up over MIST GenSurfLoss | 20 x | >= 10 x | **met** |" in text
    assert "| 2x4x128^3 signed DTMs (itk), time | 1.5 ms | <= 1 ms | **not met** |" in text
    assert "| metrics | cuCIM | absent | ModuleNotFoundError: No module named 'cucim' |" in text
    assert "| train | error |" in text and "needs nibabel" in text


# ------------------------------------------------------------------------------------------------ peers
def test_an_absent_peer_is_reported_with_its_reason(monkeypatch):
    for name in [m for m in sys.modules if m == "mist" or m.startswith("mist.")] or ["mist"]:
        monkeypatch.setitem(sys.modules, name, None)  # makes `import mist...` raise ImportError
    p = G.peer_status(G.PEER_MODULES["MIST"])
    assert p["status"] == "absent" and p["reason"].startswith(("ImportError", "ModuleNotFoundError"))
    assert "mist" in p["reason"]
    assert G.peer_status("json")["status"] == "present"
    res = _given_results()
    res["losses"]["peers"]["MIST"] = p
    del res["losses"]["data"]["mist_ms"]
    row = G.verdicts(res)[1]
    assert row["verdict"] == "not measured" and row["why"].startswith("MIST absent: ")
    assert "| losses | MIST | absent |" in G.render_markdown(
        {"started_utc": "x", "command": "c", "deadline_s": 480, "total_seconds": 1.0, "environment": ENV,
         "steps": res, "verdicts": G.verdicts(res)})


def test_a_peer_broken_at_import_is_absent_too(monkeypatch, tmp_path):
    (tmp_path / "brokenpeer.py").write_text("raise RuntimeError('half installed')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    p = G.peer_status("brokenpeer")
    assert p == {"status": "absent", "reason": "RuntimeError: half installed"}


# ------------------------------------------------------------------------------------------------ isolation, deadline
def test_a_failing_step_does_not_stop_the_others():
    ran = []

    def runner(step, budget, args, logs):
        ran.append(step)
        if step == "losses":
            raise RuntimeError("CUDA error: an illegal memory access")
        if step == "edt":
            return {"status": "failed", "reason": "wrong engine"}
        return {"status": "ok", "data": {}}

    res = G.run_suite(_args("--skip", "metrics"), runner=runner)
    assert ran == ["tests", "losses", "edt", "train"]
    assert {s: r["status"] for s, r in res.items()} == {
        "tests": "ok", "losses": "error", "edt": "failed", "metrics": "skipped", "train": "ok"}
    assert "illegal memory access" in res["losses"]["reason"]


def test_the_global_deadline_limits_budgets_and_stops_starting_steps():
    now = [0.0]
    budgets = {}

    def runner(step, budget, args, logs):
        budgets[step] = budget
        now[0] += 100.0
        return {"status": "ok"}

    res = G.run_suite(_args("--deadline", "250"), runner=runner, clock=lambda: now[0])
    assert budgets == {"tests": 180, "losses": 60, "edt": 40}   # edt: min(40, 50 left)
    assert res["metrics"]["status"] == res["train"]["status"] == "not run"
    assert "deadline" in res["metrics"]["reason"]
    assert res["tests"]["seconds"] == 100.0


def test_main_reports_failures_in_its_exit_status(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(G, "environment", lambda: dict(ENV))

    def runner(step, budget, args, logs):
        return {"status": "timeout", "reason": "killed"} if step == "train" else {"status": "ok"}

    assert G.main(["--out", str(tmp_path), "--skip", "tests"], runner=runner) == 1
    rep = json.loads(next(tmp_path.glob("gpu_2*.json")).read_text())
    assert rep["steps"]["train"]["status"] == "timeout" and rep["steps"]["tests"]["status"] == "skipped"
    assert G.main(["--out", str(tmp_path), "--skip", "train"], runner=lambda *a: {"status": "ok"}) == 0


def test_a_child_past_its_budget_is_killed(tmp_path):
    t0 = time.perf_counter()
    res = G.run_child([sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"], 1.0,
                      tmp_path / "log")
    assert res["timed_out"] and time.perf_counter() - t0 < 15
    assert "started" in res["tail"]


def test_the_real_worker_refuses_without_cuda(tmp_path, monkeypatch):
    """The child-process path end to end: a worker started here finds no CUDA device and says so."""
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the worker would run the step")
    res = G.subprocess_runner("edt", 60.0, _args(), tmp_path)
    assert res["status"] == "error" and res["reason"] == "no CUDA device in the worker"
    assert not list(tmp_path.glob(".*_result.json"))


def test_junit_counts(tmp_path):
    xml = tmp_path / "j.xml"
    xml.write_text("""<?xml version="1.0"?><testsuites><testsuite name="pytest">
<testcase classname="tests.a" name="ok"/>
<testcase classname="tests.a" name="bad"><failure message="assert 1 == 2">trace</failure></testcase>
<testcase classname="tests.a" name="skip1"><skipped message="needs nvcc"/></testcase>
<testcase classname="tests.a" name="skip2"><skipped message="needs nvcc"/></testcase>
<testcase classname="" name="tests.b"><error message="collection failure"/></testcase>
</testsuite></testsuites>""")
    c = G.parse_junit(xml)
    assert {k: c[k] for k in ("tests", "passed", "failed", "errors", "skipped")} == dict(
        tests=5, passed=1, failed=1, errors=1, skipped=2)
    assert c["failures"] == ["FAILED tests.a::bad: assert 1 == 2", "ERROR ::tests.b: collection failure"]
    assert c["skip_reasons"] == {"needs nvcc": 2}
