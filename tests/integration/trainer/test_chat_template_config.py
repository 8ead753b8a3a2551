"""`model.chat_template` and `model.chat_template_kwargs` through the real trainer (tiny model, HF
rollouts, a toy reward backend on loopback): the rollouts are fed the prompt as the file renders it with
the variables, the API counts the same tokens, an export carries the template, and a template that
cannot serve stops the start (missing file) or the load (fails to render), naming the setting."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

from live_trainer import config_data, parsed_config, prompts, server_command, wait_for, write_yaml
from transformers import AutoTokenizer

from grpo_client import TrainerClient
from grpo_server.app import TrainerApp
from grpo_server.models.tiny import CHAT_TEMPLATE
from grpo_server.rollout.hf import HFEngine

# Qwen3's way: with enable_thinking false the generation prompt closes an empty reasoning block.
THINKING_TEMPLATE = CHAT_TEMPLATE.replace(
    "{{ '<|im_start|>assistant\n' }}",
    "{{ '<|im_start|>assistant\n' }}{% if enable_thinking is false %}{{ '<think>\n\n</think>\n\n' }}{% endif %}",
)


def test_rollouts_get_the_prompt_as_the_template_file_renders_it_with_the_variables(
        toy_backend, tmp_path: Path, monkeypatch) -> None:
    template = tmp_path / "chat.jinja"
    template.write_text(THINKING_TEMPLATE, encoding="utf-8")
    _, backend = toy_backend("toy", 0.5)
    cfg = parsed_config(model={"source": "tiny", "chat_template": str(template),
                               "chat_template_kwargs": {"enable_thinking": False}})
    fed: list[list[int]] = []
    real_generate = HFEngine.generate

    def recording_generate(engine: HFEngine, batch: Any, sampling: Any) -> Any:
        fed.extend(list(p) for p in batch)
        return real_generate(engine, batch, sampling)

    monkeypatch.setattr(HFEngine, "generate", recording_generate)
    app = TrainerApp(cfg, tmp_path / "store", backend_overrides=[("toy", backend.address)])
    starter = threading.Thread(target=app.start, kwargs={"load_in_background": False})
    starter.start()
    try:
        assert app.ready.wait(300), app.failed
        tokenizer = app.tokenizer
        with TrainerClient(f"127.0.0.1:{app.api_port}") as client:
            client.submit_prompts(prompts(2))
            # StepStatus(0) is the latest step (none before the first): NOT_FOUND is never raised.
            wait_for(lambda: client.step_status().step.step >= 1 or None, 300, "step 1 never finished")
            export = client.export_checkpoint(str(tmp_path / "export"), wait=True, timeout=300)
        assert fed, "the rollout engine was never called"
        rendered = tokenizer.decode(fed[0])
        assert rendered == ("<|im_start|>user\nWhat is 0+0? Answer with just the number.<|im_end|>\n"
                            "<|im_start|>assistant\n<think>\n\n</think>\n\n")
        assert Path(export.destination).is_dir()
        exported = AutoTokenizer.from_pretrained(export.destination)
        assert exported.chat_template == THINKING_TEMPLATE  # the export carries the file's template
    finally:
        starter.join(300)
        app.shutdown(grace=60)


def test_a_missing_template_file_stops_the_start_naming_the_setting(tmp_path: Path) -> None:
    missing = tmp_path / "missing.jinja"
    config = write_yaml(tmp_path / "trainer.yaml", config_data(model={"source": "tiny", "chat_template": str(missing)}))
    done = subprocess.run([*server_command(), "--config", str(config), "--store-dir", str(tmp_path / "store")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert f"grpo-server: model.chat_template: {missing}: no such file" in done.stderr.splitlines()
    assert not (tmp_path / "store").exists()


def test_a_template_that_cannot_render_fails_the_load_naming_the_setting(toy_backend, tmp_path: Path) -> None:
    template = tmp_path / "chat.jinja"
    template.write_text("{% for m in messages %}{{ m['content'] }", encoding="utf-8")  # no closing }}
    _, backend = toy_backend("toy", 0.5)
    app = TrainerApp(parsed_config(model={"source": "tiny", "chat_template": str(template)}), tmp_path / "store",
                     backend_overrides=[("toy", backend.address)])
    app.start()
    try:
        wait_for(lambda: app.failed, 300, "the load did not fail")
        assert app.failed is not None
        assert app.failed.startswith(f"ValueError: model.chat_template ({template}) fails on a plain user message: "
                                     "TemplateSyntaxError: ")
        assert not app.ready.is_set()
    finally:
        app.shutdown(grace=30)
