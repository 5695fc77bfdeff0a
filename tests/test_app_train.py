"""The training page under AppTest: sample datasets, the data lint, a real background `rolechat train` run on the
tiny model watched to the end, the new persona in the chat picker, and failures shown with their reason.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from rolechat import settings
from tests.app_support import app_test

RUN_TIMEOUT_S = 300


def train_page(monkeypatch, model):
    at = app_test(monkeypatch, model).run()
    return at.switch_page("ui/pages/train.py").run()


def write_dataset(path, n: int = 24):
    records = [
        {"instruction": f"第{i}个问题：你好吗？", "input": "", "output": f"我很好喵~ 这是第{i}个回答喵~"}
        for i in range(n)
    ]
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return path


def use_path(at, path) -> None:
    at.radio(key="train_source").set_value("path").run()
    at.text_input(key="train_path").input(str(path)).run()


def wait_for_exit(pid: int) -> None:
    from ui.train import alive

    deadline = time.monotonic() + RUN_TIMEOUT_S
    while alive(pid):
        assert time.monotonic() < deadline, f"training process {pid} still running after {RUN_TIMEOUT_S}s"
        time.sleep(0.5)


def test_a_nul_byte_in_the_path_field_is_an_error_on_the_page_not_an_exception(monkeypatch, tiny_qwen2, tmp_path):
    at = train_page(monkeypatch, tiny_qwen2)
    use_path(at, f"{tmp_path}/data\x00.json")
    assert not at.exception
    assert any("data\\0.json" in e.value for e in at.error), [e.value for e in at.error]


def test_sample_datasets_are_offered_with_suggested_persona_settings(monkeypatch, tiny_qwen2):
    at = train_page(monkeypatch, tiny_qwen2)
    assert not at.exception
    samples = at.selectbox(key="train_sample")
    assert {"cat.json", "palace.json"} <= set(samples.options)
    samples.select_index(samples.options.index("palace.json")).run()
    assert at.text_input(key="train_name").value == "niangniang"
    assert "本宫" in at.text_area(key="train_system").value


def test_lint_then_background_training_then_the_persona_is_in_the_chat(monkeypatch, tiny_qwen2, tmp_path):
    data = write_dataset(tmp_path / "cat.json")
    at = train_page(monkeypatch, tiny_qwen2)
    use_path(at, data)
    at.text_input(key="train_name").input("xiaomao").run()
    at.text_input(key="train_display").input("小猫").run()
    at.text_area(key="train_system").input("你是一只小猫。").run()
    at.button(key="train_lint").click().run()
    assert not at.exception
    lint = {m.label: m.value for m in at.metric}
    assert lint["记录"] == "24" and lint["可用对话"] == "24"
    example = at.code[0].value
    assert "你是一只小猫。" in example and "⟦我很好喵~" in example  # system prompt applied, reply supervised

    at.number_input(key="hp_max_steps").set_value(2).run()
    at.number_input(key="hp_batch_size").set_value(4).run()
    at.button(key="train_start").click().run()
    assert not at.exception
    from ui.train import jobs

    job = jobs()[0]
    assert job.persona == "xiaomao" and ["--max-steps", "2"] == job.cmd[job.cmd.index("--max-steps") :][:2]
    assert os.getsid(job.pid) == job.pid  # its own session: closing the page does not stop it
    assert at.button(key="train_start").disabled  # one run at a time
    assert at.button(key="train_stop_xiaomao")  # the live view of the run, with its stop button

    wait_for_exit(job.pid)
    at.run()
    assert not at.exception
    assert [s.value for s in at.success] == ["训练完成：角色 xiaomao 已可在聊天页使用。"], at.code
    assert at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")  # the loss curve
    assert (settings.personas_dir() / "xiaomao" / "persona.json").is_file()

    at.switch_page("ui/pages/chat.py").run()
    assert not at.exception
    assert "小猫 (xiaomao)" in at.sidebar.selectbox(key="persona").options


def test_training_errors_are_shown_with_the_reason(monkeypatch, tiny_qwen2, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"not": "a dataset"}), encoding="utf-8")
    at = train_page(monkeypatch, tiny_qwen2)
    use_path(at, bad)
    at.text_input(key="train_name").input("broken").run()
    at.button(key="train_lint").click().run()
    assert not at.exception
    assert "数据检查失败" in at.error[0].value and "bad.json" in at.error[0].value

    at.button(key="train_start").click().run()
    from ui.train import jobs

    wait_for_exit(jobs()[0].pid)
    at.run()
    assert not at.exception
    shown = " ".join(w.value for w in at.warning) + " ".join(e.value for e in at.error)
    assert "bad.json" in shown  # the CLI's own message, not a generic failure
    assert not (settings.personas_dir() / "broken").exists()


@pytest.mark.parametrize("name, message", [("bad name!", "invalid persona name"), ("base", "reserved")])
def test_invalid_persona_names_are_refused_before_starting(monkeypatch, tiny_qwen2, tmp_path, name, message):
    at = train_page(monkeypatch, tiny_qwen2)
    use_path(at, write_dataset(tmp_path / "d.json"))
    at.text_input(key="train_name").input(name).run()
    at.button(key="train_start").click().run()
    assert not at.exception
    assert message in at.error[0].value
    from ui.train import jobs

    assert jobs() == []


def test_an_existing_persona_needs_the_overwrite_box(monkeypatch, tiny_qwen2, tmp_path):
    (settings.personas_dir() / "taken").mkdir(parents=True)
    at = train_page(monkeypatch, tiny_qwen2)
    use_path(at, write_dataset(tmp_path / "d.json"))
    at.text_input(key="train_name").input("taken").run()
    assert at.checkbox(key="train_overwrite").value is False
    at.button(key="train_start").click().run()
    assert "已经存在" in at.error[0].value
    from ui.train import jobs

    assert jobs() == []


def test_a_running_training_can_be_stopped_from_the_page(monkeypatch, tiny_qwen2, tmp_path):
    at = train_page(monkeypatch, tiny_qwen2)
    use_path(at, write_dataset(tmp_path / "d.json"))
    at.text_input(key="train_name").input("longrun").run()
    at.number_input(key="hp_max_steps").set_value(100000).run()
    at.button(key="train_start").click().run()
    from ui.train import jobs

    job = jobs()[0]
    at.button(key="train_stop_longrun").click().run()
    wait_for_exit(job.pid)
    at.run()
    assert not at.exception
    assert "训练进程已结束但没有完成" in at.warning[0].value or "训练失败" in at.error[0].value
    assert not at.button(key="train_start").disabled  # free to start another
    assert not (settings.personas_dir() / "longrun").exists()


def test_a_run_with_the_persona_check_shows_its_table_when_it_ends(monkeypatch, tiny_qwen2, tmp_path):
    at = train_page(monkeypatch, tiny_qwen2)
    use_path(at, write_dataset(tmp_path / "cat.json"))
    at.text_input(key="train_name").input("checked").run()
    at.number_input(key="hp_max_steps").set_value(1).run()
    at.checkbox(key="train_eval").check().run()
    at.button(key="train_start").click().run()
    assert not at.exception
    from ui.train import jobs

    job = jobs()[0]
    assert job.eval_persona and "--eval-persona" in job.cmd
    wait_for_exit(job.pid)
    at.run()
    assert not at.exception
    assert [s.value for s in at.success] == ["训练完成：角色 checked 已可在聊天页使用。"], at.code
    saved = json.loads((settings.personas_dir() / "checked" / "persona.json").read_text(encoding="utf-8"))
    summary = saved["evaluation"]
    assert "embedding_cosine" not in summary["skipped"]  # the run's own process embeds with the default e5
    table = at.table[0].value
    assert list(table.columns) == ["指标", "checked", "基础模型"]
    rows = dict(zip(table["指标"], zip(table["checked"], table["基础模型"])))
    assert rows["ROUGE-L（jieba 分词）↑"] == (
        f"{summary['persona']['rouge_l']:.3f}",
        f"{summary['base']['rouge_l']:.3f}",
    )
    catchphrase = f"以「{summary['catchphrase']}」结尾的比例"  # the ending its training replies share
    assert rows["向量余弦相似度 ↑"][0] == f"{summary['persona']['embedding_cosine']:.3f}"
    for label in ("出戏比例（自称 AI/助手）↓", "自行结束的比例", "distinct-1", "distinct-2", catchphrase):
        assert label in rows
    assert "角色分（判别器）↑" not in rows  # not measured (no judge trained): no row
    assert any("未计算" in c.value for c in at.caption)


def _finished_run(persona: str, *, live: bool, tmp_path):
    """A job started with the persona check whose training has finished (saved as the page's job file); its
    process, in its own session like a real run, still alive or not."""
    import subprocess
    import sys
    from dataclasses import asdict

    from ui import train

    code = "import time; time.sleep(120)" if live else "pass"
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    train._PROCS[proc.pid] = proc
    if not live:
        proc.wait()
    log = tmp_path / f"{persona}.log"
    log.write_text("training...\nerror: no held-out conversation found; pass --data FILE\n", encoding="utf-8")
    started = time.time() - 5
    job = train.Job(persona, proc.pid, ["rolechat", "train"], str(log), started, "d.json", eval_persona=True)
    train._job_file(persona).write_text(json.dumps(asdict(job)), encoding="utf-8")
    progress = settings.runs_dir() / persona / "progress.jsonl"
    progress.parent.mkdir(parents=True)
    progress.write_text(json.dumps({"event": "done", "status": "done", "time": started + 2}) + "\n", encoding="utf-8")
    return job, proc


def test_a_trained_run_still_checking_the_persona_is_shown_as_evaluating_and_can_be_stopped(
    monkeypatch, tiny_qwen2, tmp_path
):
    from ui.train import view

    job, proc = _finished_run("busy", live=True, tmp_path=tmp_path)
    try:
        assert view(job).state == "evaluating"  # trained; the page keeps watching until the table exists
        at = train_page(monkeypatch, tiny_qwen2)
        assert not at.exception
        assert "正在评估角色 busy" in at.info[0].value
        assert at.button(key="train_start").disabled  # the check is part of the run: one at a time
        stop = at.button(key="train_stop_busy")
        assert stop.label == "停止评估（角色已保存）"
        stop.click().run()
        proc.wait(timeout=30)  # Ctrl-C ends the check
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    run = view(job)
    assert run.state == "done" and run.evaluation is None and run.eval_error
    at.run()
    assert not at.exception
    assert [s.value for s in at.success] == ["训练完成：角色 busy 已可在聊天页使用。"]
    assert "角色评估没有完成" in at.warning[0].value  # and why, from the end of its log
    assert any(e.label == "训练日志（末尾）" for e in at.expander)


def test_a_persona_check_that_left_no_summary_says_why(tmp_path):
    from datetime import UTC, datetime

    from rolechat.llm.personas import PersonaManifest
    from ui.train import view

    job, _ = _finished_run("unchecked", live=False, tmp_path=tmp_path)
    old = datetime.fromtimestamp(job.started - 3600, UTC).isoformat(timespec="seconds")
    folder = settings.personas_dir() / "unchecked"
    PersonaManifest(name="unchecked", evaluation={"time": old, "persona": {"rouge_l": 0.5}}).save(folder)
    run = view(job)
    assert run.state == "done" and run.evaluation is None  # an earlier check's summary is not this run's
    assert "no held-out conversation found" in run.eval_error
    new = datetime.fromtimestamp(job.started + 3, UTC).isoformat(timespec="seconds")
    PersonaManifest(name="unchecked", evaluation={"time": new, "persona": {"rouge_l": 0.5}}).save(folder)
    assert view(job).evaluation["persona"] == {"rouge_l": 0.5}
