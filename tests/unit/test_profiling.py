import pytest

from benchmarks.profiling import IDLE, OTHER, summarise

STACKS = "\n".join([
    "<module> (cli.py:1);_WorkItem.run (/x/concurrent/futures/thread.py:58);TfidfScorer.score_clean (/w/models/tfidf.py:115);"
    "CharWordCounts.counts (/w/models/tfidf.py:57) 30",
    "Thread._bootstrap (threading.py:1);_worker (/x/concurrent/futures/thread.py:81) 50",
    "run_forever (base_events.py:607);Handle._run (events.py:80);Pipeline.process (/w/stream/pipeline.py:116);"
    "Counters.count (/w/counting/counters.py:174);evalsha (/x/redis/commands/core.py:11294) 10",
    "run_forever (base_events.py:607);Pipeline.process (/w/stream/pipeline.py:97);preprocess (/w/models/preprocess.py:36) 6",
    "run_forever (base_events.py:607);Escalator.evaluate (/w/alerting/escalation.py:98);snapshot (/w/counting/counters.py:198) 4",
    "Worker.execute_from_commandline (/x/mode/worker.py:264);run_forever (base_events.py:607);Handle._run (/x/asyncio/events.py:80);"
    "Fetcher._fetcher (/x/faust/transport/consumer.py:177);_wait (/x/asyncio/tasks.py:519) 12",
    "run_forever (base_events.py:607);EpollSelector.select (/x/selectors.py:468) 80",
    "Worker.execute_from_commandline (/x/mode/worker.py:264);run_forever (base_events.py:607);Handle._run (/x/asyncio/events.py:80) 8",
    "not a sample line",
])


def test_samples_are_split_by_stage_and_idle_waiting_is_set_apart():
    by_stage, functions = summarise(STACKS)
    shares = {row["stage"]: row["share_of_samples"] for row in by_stage}
    assert shares == pytest.approx({
        "model scoring (on the event loop or a thread)": 30 / 200,
        "counting in Redis (request + reply)": 10 / 200,
        "escalation (window reads, rule)": 4 / 200,
        "decode, preprocess, scopes, terms": 6 / 200,
        "Faust consumer (fetch, per-message delivery, acks)": 12 / 200,
        OTHER: 8 / 200,
        IDLE: 130 / 200,
    })
    assert [row["stage"] for row in by_stage][-1] == IDLE
    assert functions[0] == {"function": "CharWordCounts.counts (tfidf.py)", "share_of_samples": 30 / 200}
    assert "EpollSelector.select (selectors.py)" not in {f["function"] for f in functions}


def test_no_samples_no_rows():
    assert summarise("") == ([], [])


def test_report_notes_each_fact_once_and_carries_no_machine_paths(tmp_path, monkeypatch):
    from benchmarks.run import Report, report_profile

    monkeypatch.chdir(tmp_path)
    logs = tmp_path / "var" / "bench-logs"
    logs.mkdir(parents=True)
    report = Report()
    for family in ("gru", "tfidf"):
        (logs / f"profile-{family}.txt").write_text(STACKS)
        report_profile(family, logs / f"profile-{family}.txt", report, say=lambda _: None)
    notes = report.markdown().split("## Notes", 1)[1]
    assert notes.count("Profiles: py-spy") == 1
    assert "raw collapsed stacks in var/bench-logs." in notes
    assert str(tmp_path) not in report.markdown()
