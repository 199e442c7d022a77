"""benchmarks/run.py: the figures' file says which machine made it, and how
fast that machine's interpreter was then (no figure here is asserted: speed
lives in ``make bench``)."""
import json

from benchmarks import run as R


def test_the_reference_loop_is_a_rate_and_the_cpu_has_a_name():
    assert R.reference_loops_per_s(loops=50, best_of=2) > 0
    name = R.cpu_model()
    assert isinstance(name, str) and name


def test_the_results_file_carries_the_machine_and_its_reference(tmp_path):
    out = tmp_path / "results.json"
    assert R.main(["--out", str(out), "--only", "no_such_bench"]) == 0
    res = json.loads(out.read_text())
    assert res["benchmarks"] == {}
    for key in ("cpu_model", "cpu_count", "python", "date", "load_average_before",
                "load_average_after"):
        assert key in res
    assert res["reference_loops_per_s_before"] > 0 and res["reference_loops_per_s_after"] > 0
