"""Wiring: build the trainer's parts from a Config and run them (what `grpo-server` starts).

Start order matters for users: the API and metrics come up first with health NOT_SERVING (a client can
already see RUN_STATE_STARTING), then the model and engines load, the run resumes from its last
checkpoint (prompts after it go back to the queue), health turns SERVING, and the loop starts.
Shutdown (SIGTERM) is the reverse: health NOT_SERVING, the current step finishes, a checkpoint is
written, the API stops.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from grpo_server import __version__
from grpo_server.api.ports import WeightsUnsafe
from grpo_server.api.validation import PromptRoom
from grpo_server.chat import read_chat_template, use_chat_template
from grpo_server.checkpoint import (
    ExportManager,
    ExportRecords,
    check_checkpoint_fits,
    checkpoint_settings,
    copy_weights,
    os_reason,
    page_of,
    parameter_shapes,
    prune_checkpoints,
    remove_unrecorded_checkpoints,
    save_training_checkpoint,
)
from grpo_server.config import Config
from grpo_server.metrics import TrainerMetrics

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_model_path(cfg: Config, store_dir: Path) -> Path:
    """The Hugging Face directory of the initial model (built or prepared once, then reused)."""
    m = cfg.model
    if m.source == "path":
        assert m.path is not None
        return Path(m.path).expanduser()
    cache = Path(m.cache_dir).expanduser() if m.cache_dir else Path.home() / ".cache" / "grpo" / "models"
    if m.source == "tiny":
        from grpo_server.models.tiny import build_tiny_model

        path = store_dir / f"model-tiny-seed{m.seed}"
        if not (path / "config.json").exists():
            build_tiny_model(path, seed=m.seed)
        return path
    from grpo_server.models.smollm2 import prepare_smollm2

    return prepare_smollm2(cache, log=log.info)  # its download and conversion lines, as log lines


def _library_logs_as_ours() -> None:
    """Make transformers log through the root logger (the trainer's timestamped, levelled lines) and draw
    no progress bars (nor huggingface_hub's): a bar is a run of carriage returns without time or level,
    unreadable in a log file, journald or `kubectl logs`."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.disable_default_handler()
    hf_logging.enable_propagation()


def load_policy(cfg: Config, store_dir: Path) -> tuple[Path, Any, torch.nn.Module]:
    """(initial model directory, tokenizer, the model to train) as the config asks."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _library_logs_as_ours()
    torch.manual_seed(cfg.training.seed)
    model_path = resolve_model_path(cfg, store_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=_DTYPES[cfg.model.dtype])
    model.config.use_cache = False
    if cfg.training.gradient_checkpointing:
        # Non-reentrant: works with frozen inputs (LoRA) and with the loss's custom masks.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model_path, tokenizer, model


def build_training_engine(cfg: Config, model: torch.nn.Module) -> Any:
    """The training engine of the config (torch, or DeepSpeed on every rank of the launch)."""
    from grpo_server.training.engine import OptimConfig, make_engine

    t = cfg.training
    optim = OptimConfig(
        learning_rate=t.learning_rate, weight_decay=t.weight_decay, betas=(t.adam_betas[0], t.adam_betas[1]),
        max_grad_norm=t.max_grad_norm, warmup_steps=t.warmup_steps, lr_schedule=t.lr_schedule,
        # The schedule moves once per optimizer step, and a training step makes inner_iterations of them.
        total_steps=t.max_steps * cfg.algorithm.inner_iterations, micro_batch_size=t.micro_batch_size,
    )
    return make_engine(t.engine, model, optim, zero_stage=t.zero_stage)


def run_worker_rank(cfg: Config, store_dir: Path) -> None:
    """A DeepSpeed rank other than 0: build the same model and engine, then follow rank 0's commands
    (train steps, weight gathers, checkpoint saves and loads) until it says stop. Rank 0 serves the API."""
    import tempfile

    from grpo_server.training.distributed import (
        STOP,
        finish,
        leave_after_failed_load,
        open_load_gate,
        worker_loop,
    )

    if cfg.training.threads:  # as rank 0 does (TrainerApp.start)
        torch.set_num_threads(cfg.training.threads)
    # The tiny model is built per rank (deterministic) so ranks never race on one directory.
    with tempfile.TemporaryDirectory(prefix="grpo-rank-") as scratch:  # gone once the weights are in memory
        _path, _tokenizer, model = load_policy(cfg, Path(scratch) if cfg.model.source == "tiny" else store_dir)
    if cfg.algorithm.lora_rank > 0:
        from grpo_server.training import lora

        a = cfg.algorithm
        model = lora.apply_lora(model, a.lora_rank, a.lora_alpha, a.lora_dropout, list(a.lora_target_modules))  # type: ignore[assignment]
    gate = open_load_gate()
    if gate is not None and gate.receive().name == STOP:
        log.error("rank %d: rank 0 could not load the run (its log and the API say why); this rank stops", gate.rank)
        leave_after_failed_load(gate)
        return
    worker_loop(build_training_engine(cfg, model))
    finish()  # meets rank 0's finish() at the end of its shutdown


# Why vLLM cannot run beside DeepSpeed's ranks (the CLI refuses it, `auto` picks hf there).
VLLM_BESIDE_RANKS = ("in the trainer's process vLLM joins the ranks' process group and waits in its set-up for "
                     "ranks that never come (the run never finishes loading)")


def choose_rollout_engine(kind: str, ranks: int = 1) -> str:
    """auto -> vllm when it imports, else hf; hf beside several training ranks (VLLM_BESIDE_RANKS)."""
    if kind != "auto":
        return kind
    if ranks > 1:
        return "hf"
    try:
        import vllm  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means "not usable here"
        return "hf"
    return "vllm"


class StartupError(Exception):
    """A setting the trainer cannot start with. `field` is the config field (`server.listen`); the message
    says what is wrong with its value. Raised before the store is created or locked, except for store_dir
    problems met while creating or locking it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


def model_context(model: Any) -> int | None:
    """The positions the model itself has (its config's max_position_embeddings or n_positions), or None."""
    return next((v for v in (getattr(model.config, k, None) for k in ("max_position_embeddings", "n_positions"))
                 if isinstance(v, int) and v > 0), None)


def rollout_context(cfg: Config, model: Any) -> int | None:
    """Tokens of context a rollout has, prompt and completion together: the model's (`model_context`), or
    rollout.vllm_max_model_len when that is smaller and vLLM may run (engine vllm or auto); None when
    neither says."""
    own = model_context(model)
    limit = cfg.rollout.vllm_max_model_len if cfg.rollout.engine != "hf" else None
    return min(own, limit) if own is not None and limit is not None else own or limit


def check_model_settings(cfg: Config, model: Any, context: int | None) -> None:
    """Settings whose limit is the model's: raise StartupError before any prompt is leased rather than
    fail the first step. rollout.max_new_tokens must leave room for a prompt in the `context`
    (`rollout_context`'s). The model's logits must be the LM head applied to its decoder's output
    (`logits_from_hidden_problem`). `algorithm.sdpo_top_k` must not exceed the vocabulary (the logits'
    width); the config already refuses a top-k its SDPO loss would not use."""
    # (A vllm_max_model_len at or under max_new_tokens is refused with the config: here it is the model's.)
    if context is not None and cfg.rollout.max_new_tokens >= context:
        raise StartupError("rollout.max_new_tokens", f"{cfg.rollout.max_new_tokens} tokens of completion leave no "
                           f"room for a prompt in the model's context of {context} tokens")
    from grpo_server.training.loss import logits_from_hidden_problem

    problem = logits_from_hidden_problem(model)
    if problem is not None:
        raise StartupError("model", f"this model cannot be trained here: {problem}")
    top_k = cfg.algorithm.sdpo_top_k
    if top_k is None or cfg.algorithm.effective_sdpo_weight <= 0:
        return
    output = model.get_output_embeddings()  # a transformers model: the LM head's rows are the vocabulary
    vocab = int(output.weight.shape[0]) if output is not None else int(model.config.vocab_size)
    if top_k > vocab:
        raise StartupError("algorithm.sdpo_top_k", f"{top_k} is more than the model's vocabulary of {vocab} tokens")


def _model_name(cfg: Config) -> str:
    """The model as the log names it: its source, and the path or seed that picks it."""
    m = cfg.model
    return f"path {m.path}" if m.source == "path" else f"tiny (seed {m.seed})" if m.source == "tiny" else m.source


def _check_store_dir(store_dir: Path) -> None:
    """A store directory that exists must be a directory (one that does not is created later)."""
    try:
        not_a_directory = store_dir.exists() and not store_dir.is_dir()
    except OSError as err:
        raise StartupError("store_dir", f"cannot use {store_dir}: {os_reason(err)}") from None
    if not_a_directory:
        raise StartupError("store_dir", f"{store_dir} exists and is not a directory")


def _serve_metrics(metrics: TrainerMetrics, listen: str, serving: Callable[[], bool]) -> int:
    """Serve /metrics and /healthz (200 while `serving()`) on `listen`; returns the bound port. A bind
    failure names its cause as the API's does."""
    from grpo_server.api.server import bind_problem

    problem = bind_problem(listen)
    try:
        if problem is None:
            return metrics.serve(listen, serving)
    except OSError as err:
        problem = os_reason(err)
    raise StartupError("server.metrics_listen", f"cannot listen on {listen}: {problem}")


def _load_tokens(cfg: Config) -> Any:
    """The auth tokens file read and checked now (a TokenStore), or None when auth is off."""
    from grpo_server.api.auth import TokensFileError, TokenStore

    auth = cfg.auth
    if not auth.tokens_file:
        return None
    try:
        return TokenStore(Path(auth.tokens_file), auth.reload_interval_seconds)
    except TokensFileError as err:  # its message names the file, the entry and the field
        raise StartupError("auth.tokens_file", str(err)) from None
    except OSError as err:
        raise StartupError("auth.tokens_file", f"{auth.tokens_file}: cannot read: {os_reason(err)}") from None


def _tls_credentials(cfg: Config) -> Any:
    """The server's TLS credentials from server.tls_cert / tls_key / tls_client_ca, each file read and
    parsed now (gRPC itself would fail later with "Failed to bind"), or None without TLS. The credentials
    re-read the files when they change (a renewed certificate needs no restart; see ServerCertificates)."""
    from grpo_server.api.auth import ServerCertificates, TLSFilesError

    s = cfg.server
    if not (s.tls_cert and s.tls_key):
        return None
    try:
        return ServerCertificates(s.tls_cert, s.tls_key, s.tls_client_ca).credentials()
    except TLSFilesError as err:  # its message names the file and what is wrong with it
        raise StartupError(f"server.tls_{err.which}", str(err)) from None


def _check_model_path(cfg: Config) -> None:
    """model.path (source 'path') must be a model directory, checked before the store is touched: a
    missing one failed the run after the start, with transformers' "Repo id must be in the form ..."."""
    if cfg.model.source != "path" or cfg.model.path is None:
        return
    path = Path(cfg.model.path).expanduser()
    if not path.is_dir():
        raise StartupError("model.path", f"{path}: no such directory" if not path.exists() else f"{path} is not a directory")
    if not (path / "config.json").is_file():
        raise StartupError("model.path", f"{path} holds no config.json: give a Hugging Face model directory")


def _read_chat_template(cfg: Config) -> str | None:
    """model.chat_template's text, read now (a missing file stops the start, not the model load), or None."""
    if not cfg.model.chat_template:
        return None
    try:
        return read_chat_template(cfg.model.chat_template)
    except ValueError as err:
        raise StartupError("model.chat_template", str(err)) from None


DRAIN_SECONDS = 600.0
"""How long a drain (SIGTERM) waits for the step in progress and the last checkpoint before it tears the
engines down anyway. The Helm chart's trainer.terminationGracePeriodSeconds must exceed it."""


@dataclass
class TrainerApp:
    """The running trainer. `start()` returns once the API is up and loading has begun on a thread."""

    cfg: Config
    store_dir: Path
    backend_overrides: list[tuple[str, str]] = field(default_factory=list)
    config_file: Path | None = None  # where cfg was read from, for the log (None: not from a file)
    api_port: int = 0
    metrics_port: int | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    failed: str | None = None
    _stopped: bool = False
    # Held while the loader decides to start the loop and while shutdown() marks the drain: a drain that
    # begins as the model finishes loading either stops the loader before it starts anything, or comes
    # after the loop has started (and stops it) - never in between, where "running" and SERVING would be
    # set over "draining".
    _start_lock: threading.Lock = field(default_factory=threading.Lock)
    _loader: threading.Thread | None = None
    _store_lock: Any = None
    _chat_template: str | None = None  # model.chat_template's text, read by start()
    _load_gate: Any = None  # several DeepSpeed ranks: where rank 0 tells the others GO or STOP (open_load_gate)

    def start(self, *, load_in_background: bool = True) -> None:
        """Check the settings the store does not need (store path, reward registry, tokens, TLS files) and
        bind the API and metrics ports, then lock and open the store, serve the API (NOT_SERVING), and
        load the model and start training. A bad setting raises StartupError (RegistryError for the
        registry) before the store directory, its lock or its SQLite file is created; StoreInUse when
        another trainer holds the store (nothing in it touched)."""
        from grpo_server.api.server import ListenError, bind_server, serve
        from grpo_server.api.servicer import TrainerServicer
        from grpo_server.control import RunControl
        from grpo_server.rewards.registry import BackendEntry, RewardRegistry

        cfg = self.cfg
        _check_store_dir(self.store_dir)
        # BackendConfig's fields are BackendEntry's, by design: one registry-entry shape everywhere.
        entries = [BackendEntry(name=name, source="config", **b.model_dump()) for name, b in cfg.rewards.backends.items()]
        overrides = [BackendEntry(name=n, address=a, source="flag") for n, a in self.backend_overrides]
        registry_file = Path(cfg.rewards.registry_file) if cfg.rewards.registry_file else None
        self.registry = RewardRegistry(entries, registry_file=registry_file, overrides=overrides)  # RegistryError
        tokens = _load_tokens(cfg)
        credentials = _tls_credentials(cfg)
        self._chat_template = _read_chat_template(cfg)
        _check_model_path(cfg)
        try:
            self.server, self.api_port = bind_server(
                cfg.server.listen, tokens=tokens, credentials=credentials,
                max_message_bytes=cfg.limits.max_message_bytes, max_workers=cfg.server.max_workers,
            )
        except ListenError as err:
            raise StartupError("server.listen", str(err)) from None
        self.metrics = TrainerMetrics()
        # Every backend "closed" until the router (made when the model loads) attaches its breakers.
        self.metrics.attach_circuit_states(self.registry.circuit_states)
        try:
            if cfg.server.metrics_listen:
                # /healthz is the gRPC health (NOT_SERVING until the API's Health exists and the model has
                # loaded) in plain HTTP, for probes that cannot speak the API's TLS.
                self.metrics_port = _serve_metrics(self.metrics, cfg.server.metrics_listen, self._serving)
            requeued = self._open_store()
            # The first line of a start that goes ahead (a refused one prints only why): which trainer, on
            # which store, with what.
            log.info("grpo-server %s (torch %s): %sstore %s, model %s, training engine %s, rollout engine %s",
                     __version__, torch.__version__,
                     f"config {self.config_file.absolute()}, " if self.config_file is not None else "",
                     self.store_dir.absolute(), _model_name(cfg), cfg.training.engine, cfg.rollout.engine)
            if requeued:
                log.info("re-queued %d prompts leased after the last checkpoint", requeued)
            # /metrics tells where the run is from the start, not 0 until the restart's first step: the
            # latest completed step's number and gauges (its reward, loss, micro-batch size...).
            latest = self.store.latest_completed_step()
            self.metrics.latest_step.set(latest)
            report = self.store.get_step(latest) if latest else None
            if report is not None:
                self.metrics.show_step(report)
            self.metrics.queue_depth.set(self.store.queue_depth())
            self.metrics.attach_store(self.store.files)
            # What the API was told (paused, backends added/changed/removed) outlives a restart.
            self.registry.attach_store(self.store)
            self.control = RunControl(store=self.store)
            # Exports a stopped trainer did not finish are settled before GetExport can be asked.
            self.export_records = ExportRecords(self.store)
            for job in self.export_records.close_unfinished():
                log.warning("export %s (step %d to %s), unfinished when the trainer stopped: %s", job.export_id,
                            job.step, job.destination, "done after all" if job.state == "done" else job.error)
                if job.state == "failed":
                    self.metrics.export_failures.inc()
        except BaseException:  # ports and lock go back: an in-process caller may start again
            self.server.stop(None)
            self.metrics.close()
            if getattr(self, "store", None) is not None:
                self.store.close()
            if self._store_lock is not None:
                self._store_lock.close()
                self._store_lock = None
            raise
        if cfg.training.threads:
            torch.set_num_threads(cfg.training.threads)
        self.registry.start_watching()
        self.exporter = _LazyExporter(self.export_records)
        self.tokenizer: Any = None
        self.prompt_room: PromptRoom | None = None  # known with the model
        servicer = TrainerServicer(
            store=self.store,
            control=self.control,
            registry=self.registry,
            exporter=self.exporter,
            limits=cfg.limits,
            default_rewards=[(r.backend, r.weight) for r in cfg.rewards.default],
            tokenizer_getter=lambda: self.tokenizer,
            room_getter=lambda: self.prompt_room,
            chat_template_kwargs=cfg.model.chat_template_kwargs,
            metrics=self.metrics,
        )
        self.health = serve(self.server, servicer)
        metrics = f"on {cfg.server.metrics_listen} (port {self.metrics_port})" if self.metrics_port is not None else "off"
        log.info("API listening on %s (port %d, tls=%s, auth=%s), metrics %s; health NOT_SERVING while the "
                 "model loads", cfg.server.listen, self.api_port, credentials is not None, tokens is not None, metrics)
        if load_in_background:
            self._loader = threading.Thread(target=self._load_and_run, name="loader", daemon=True)
            self._loader.start()
        else:
            self._load_and_run()

    def _serving(self) -> bool:
        """What the gRPC health says, for /healthz: no lock (a probe must not wait for a training step)."""
        health = getattr(self, "health", None)
        return health is not None and bool(health.serving)

    def _open_store(self) -> int:
        """Create and lock the store directory, open the store and put leases after the last checkpoint
        back in the queue; returns how many went back. StoreInUse: another trainer holds it (then nothing in
        it is touched)."""
        from grpo_server.store import Store, StoreError, lock_store
        from grpo_server.store.lock import LOCK_FILE

        lock_path = self.store_dir / LOCK_FILE
        had_lock = lock_path.exists()
        try:
            self.store_dir.mkdir(parents=True, exist_ok=True)
            self._store_lock = lock_store(self.store_dir)
        except OSError as err:
            raise StartupError("store_dir", f"cannot use {self.store_dir}: {os_reason(err)}") from None
        try:
            self.store = Store(self.store_dir, max_attempts=self.cfg.training.max_prompt_attempts)
        except StoreError as err:  # not a store, damaged, or written by a newer trainer
            if not had_lock:  # leave the directory as it was found: only the refused file in it
                lock_path.unlink(missing_ok=True)
            raise StartupError("store_dir", str(err)) from None
        return self.store.recover()

    def _load_and_run(self) -> None:
        started = time.monotonic()
        try:
            self._load()
        except Exception as exc:  # noqa: BLE001 - reported through the run state, the API stays up
            log.exception("loading failed")
            if self._load_gate is not None:  # the other ranks wait for the word: they leave
                from grpo_server.training.distributed import leave_after_failed_load

                leave_after_failed_load(self._load_gate)
                self._load_gate = None
            self.failed = f"{type(exc).__name__}: {exc}"
            self.control.fail(self.failed)
            self.metrics.set_run_state("failed")
            return
        with self._start_lock:
            if self._stopped:  # SIGTERM came while the model loaded: shutdown() waits for us, start nothing
                log.info("stopping before the first step: the drain began while the model loaded")
                return
            self.control.set_ready(True)
            self.health.set_serving(True)
            log.info("ready in %.1f s: rollout engine %s (rollout.engine %s), training engine %s; health SERVING",
                     time.monotonic() - started, self.loop.engine_name, self.cfg.rollout.engine,
                     self.cfg.training.engine)
            self.ready.set()
            self.loop.start()

    def _load(self) -> None:
        from transformers import GenerationConfig

        from grpo_server.rewards.router import RewardRouter
        from grpo_server.rollout.base import SamplingConfig, make_engine
        from grpo_server.training import lora
        from grpo_server.training.loop import StepRunner, StepSettings, TrainingLoop, build_reference_model
        from grpo_server.training.loss import LossConfig
        from grpo_server.training.sdpo import SdpoSettings

        cfg = self.cfg
        m = cfg.model
        if cfg.training.engine == "deepspeed":
            from grpo_server.training.distributed import open_load_gate

            self._load_gate = open_load_gate()  # the other ranks build the engine on its GO, leave on STOP
        model_path, tokenizer, model = load_policy(cfg, self.store_dir)
        if cfg.training.engine == "torch" and torch.cuda.is_available():
            # The torch engine trains (and the HF rollout samples) where the module is: on the GPU when there
            # is one, the reference model (copied below) with it. It stayed on the CPU. (DeepSpeed places
            # its own.) Untested here: no GPU in this project's sessions.
            model.to("cuda")
        use_chat_template(tokenizer, self._chat_template, m.chat_template_kwargs, source=str(m.chat_template))
        context = rollout_context(cfg, model)
        check_model_settings(cfg, model, context)
        self.prompt_room = PromptRoom(context, cfg.rollout.max_new_tokens) if context is not None else None
        self.tokenizer = tokenizer  # submissions are accepted (token-counted) while the rest loads
        ref_model = build_reference_model(model) if cfg.algorithm.beta > 0 else None
        if cfg.algorithm.lora_rank > 0:  # after the reference copy: the reference stays the plain base model
            a = cfg.algorithm
            model = lora.apply_lora(model, a.lora_rank, a.lora_alpha, a.lora_dropout, list(a.lora_target_modules))  # type: ignore[assignment]
        t = cfg.training
        shapes = parameter_shapes(model)  # before DeepSpeed partitions the parameters
        latest = self.store.latest_checkpoint()
        for p in remove_unrecorded_checkpoints(self.store_dir, latest.step if latest is not None else None):
            log.info("removed %s: the store never recorded it (the trainer stopped while writing it)", p)
        if latest is not None:  # another run's store fails here with a message, not a state-dict error
            check_checkpoint_fits(Path(latest.path), shapes, str(model_path), checkpoint_settings(cfg))
        if self._load_gate is not None:
            from grpo_server.training.distributed import GO, Command

            self._load_gate.send(Command(GO))
            self._load_gate = None
        engine = build_training_engine(cfg, model)
        self.engine = engine  # closed by shutdown (it stops the other ranks) even if the load fails after this
        if latest is not None:
            log.info("resuming from the checkpoint of step %d (%s)", latest.step, latest.path)
            engine.load_state(Path(latest.path))
        kind = choose_rollout_engine(cfg.rollout.engine, int(getattr(engine, "world_size", 1)))
        r = cfg.rollout
        rollout = make_engine(
            kind,
            model_path=str(model_path),
            # HF generate shares the trainer's module (no weight copy) on the torch engine; under DeepSpeed
            # (ZeRO-3 partitions the parameters) it keeps its own copy, fed from named_weights().
            model=engine.model if kind == "hf" and cfg.training.engine == "torch" else None,
            tokenizer=tokenizer,
            dtype=r.vllm_dtype if kind == "vllm" else cfg.model.dtype,
            device="cuda" if torch.cuda.is_available() else "cpu",
            seed=t.seed,
            **({"gpu_memory_utilization": r.vllm_gpu_memory_utilization, "max_model_len": r.vllm_max_model_len,
                "enforce_eager": r.vllm_enforce_eager,
                **({"kv_cache_memory_bytes": int(r.vllm_kv_cache_gib * 2**30)} if r.vllm_kv_cache_gib else {})}
               if kind == "vllm" else {}),
        )
        weights_shared = kind == "hf" and cfg.training.engine == "torch"
        if latest is not None and not weights_shared:
            rollout.load_weights(lora.policy_weights(engine.model, engine.named_weights()))
        a = cfg.algorithm
        sdpo_weight = a.effective_sdpo_weight
        sdpo = SdpoSettings(
            weight=sdpo_weight, loss=a.sdpo_loss, kl_kind=a.sdpo_kl_kind, top_k=a.sdpo_top_k,
            jsd_alpha=a.sdpo_jsd_alpha, teacher=a.sdpo_teacher, ema_rate=a.sdpo_ema_rate, is_clip=a.sdpo_is_clip,
            success_threshold=a.sdpo_success_threshold, use_feedback=a.sdpo_use_feedback,
            use_siblings=a.sdpo_use_siblings, instruction=a.sdpo_instruction,
        ) if sdpo_weight > 0 else None
        settings = StepSettings(
            prompts_per_step=a.prompts_per_step,
            group_size=a.group_size,
            sampling=SamplingConfig(n=a.group_size, max_new_tokens=r.max_new_tokens, temperature=r.temperature,
                                    top_p=r.top_p, top_k=r.top_k),
            loss=LossConfig(temperature=r.temperature, beta=a.beta, epsilon_low=a.epsilon_low,
                            epsilon_high=a.epsilon_high, delta=a.delta, aggregation=a.aggregation,
                            max_tokens=r.max_new_tokens, importance_sampling_level=a.importance_sampling_level,
                            grpo_weight=0.0 if a.name == "sdpo" else 1.0, tis_cap=a.tis_cap, tis_level=a.tis_level,
                            sdpo=sdpo),
            advantage_scale=a.advantage_scale,
            advantage_eps=a.advantage_eps,
            inner_iterations=a.inner_iterations,
            micro_batch_size=t.micro_batch_size,
            mask_truncated=a.mask_truncated_completions,
            seed=t.seed,
            dynamic_sampling=a.dynamic_sampling,
            max_resample_rounds=a.max_resample_rounds,
            overlong_cache_tokens=a.overlong_cache_tokens,
            overlong_penalty_factor=a.overlong_penalty_factor,
            process_supervision=a.process_supervision,
            chat_template_kwargs=m.chat_template_kwargs,
            context_tokens=context,
            model_context_tokens=model_context(model),
        )
        router = RewardRouter(
            self.registry, observer=self.metrics, max_retries=cfg.rewards.max_retries,
            breaker_failures=cfg.rewards.breaker_failures, breaker_reset_s=cfg.rewards.breaker_reset_seconds,
            breaker_first_reset_s=cfg.rewards.breaker_first_reset_seconds,
        )
        runner = StepRunner(settings, tokenizer=tokenizer, rollout=rollout, engine=engine, router=router,
                            ref_model=ref_model, weights_shared=weights_shared,
                            lease_more=lambda count, step: self.store.lease(count, step))
        self.engine, self.rollout, self.router = engine, rollout, router

        def save_state(directory: Path) -> None:
            # The runner's state (the SDPO teacher) joins the engine's inside the temporary directory, so
            # the checkpoint's manifest covers it and the rename makes both durable together.
            engine.save_state(directory)
            runner.save_state(directory)

        def save(step: int) -> Path:
            path = save_training_checkpoint(save_state, self.store_dir, step,
                                            {"model_path": str(model_path), "time": time.time(), "parameters": shapes,
                                             "settings": checkpoint_settings(cfg)},
                                            keep=cfg.checkpoint.keep)
            # The store's latest checkpoint stays until commit_checkpoint records this one: a crash in
            # between must leave the checkpoint the restart resumes from on disk (keep: 1 removed it).
            committed = self.store.latest_checkpoint()
            protect = [step] + ([committed.step] if committed is not None else [])
            prune_checkpoints(self.store_dir, keep_steps=protect, keep=cfg.checkpoint.keep)
            return path

        def committed(step: int) -> None:  # the one the store recorded before may go now (keep: 1)
            prune_checkpoints(self.store_dir, keep_steps=[step], keep=cfg.checkpoint.keep)

        self.loop = TrainingLoop(
            runner, store=self.store, control=self.control, registry=self.registry, metrics=self.metrics,
            save_checkpoint=save, checkpoint_committed=committed, checkpoint_every=cfg.checkpoint.every_steps,
            max_steps=t.max_steps,
            partial_step_after_seconds=t.partial_step_after_seconds, engine_name=kind,
            samples_per_step=t.samples_per_step, samples_keep_steps=t.samples_keep_steps,
            retention=cfg.retention,
        )
        generation_config = None
        with contextlib.suppress(OSError):
            generation_config = GenerationConfig.from_pretrained(model_path)

        adapters = lora.AdapterExports(engine.model)  # LoRA: the adapter alone, beside each merged export

        def snapshot() -> tuple[int, dict[str, torch.Tensor]]:
            with self.loop.step_lock:  # a copy of the weights between two optimizer steps
                if self.loop.weights_error:
                    raise WeightsUnsafe(self.loop.weights_error)
                adapters.capture(self.loop.step)
                return self.loop.step, copy_weights(lora.policy_weights(engine.model, engine.named_weights()))

        def on_export(job: Any, seconds: float) -> None:
            if job.state != "done":  # a failed export wrote no checkpoint (GetExport reports its error)
                self.metrics.export_failures.inc()
                return
            self.metrics.checkpoints.labels(kind="export").inc()
            self.metrics.checkpoint_duration.labels(kind="export").observe(seconds)

        self.exporter.target = adapters.wrap(ExportManager(
            snapshot, model.config, tokenizer, self.store_dir / "exports",
            generation_config=generation_config, on_done=on_export, records=self.export_records,
        ))

    def shutdown(self, grace: float = DRAIN_SECONDS) -> None:
        """Drain: health NOT_SERVING, finish the current step, checkpoint, stop the API. Idempotent."""
        drain_ends = time.monotonic() + grace
        with self._start_lock:
            if self._stopped:
                return
            self._stopped = True
        if getattr(self, "health", None) is not None:
            self.health.set_serving(False)
        self.control.set_state("draining")  # a failed run stays FAILED: its drain runs and writes nothing
        self.metrics.set_run_state(self.control.state.value)
        if self.control.state.value == "failed":
            log.info("stopping the failed run (%s)", self.control.error)
        else:
            log.info("draining: finishing the current step and writing a checkpoint")
        if self._loader is not None and self._loader.is_alive():
            # Still loading: let it finish (it then starts nothing) rather than closing the store and
            # engines under it.
            log.info("waiting for the model to finish loading")
            self._loader.join(grace)
        loop = getattr(self, "loop", None)
        if loop is not None:
            loop.stop(timeout=grace)
            if loop.alive:
                loop.abandon()
                log.warning(
                    "the current step did not finish within the %g s drain; stopping without it: nothing "
                    "after checkpoint step %d is kept, and its prompts go back to the queue when the trainer "
                    "starts again", grace, loop.checkpoint_step)
        # Exports the API accepted are finished within the drain (they were abandoned: FAILED "interrupted"
        # after the restart, with nothing in the log).
        exporter = getattr(self, "exporter", None)
        for job in exporter.finish(max(drain_ends - time.monotonic(), 0.0)) if exporter is not None else []:
            log.warning("export %s (step %d to %s) did not finish within the %g s drain; it is abandoned (GetExport "
                        "answers FAILED after a restart): export again", job.export_id, job.step, job.destination,
                        grace)
        if getattr(self, "rollout", None) is not None:
            self.rollout.close()
        if getattr(self, "engine", None) is not None:
            self.engine.close()  # under DeepSpeed this also stops the other ranks
        self.registry.stop()
        self.control.close()  # ends WatchSteps streams
        self.server.stop(grace=5).wait()
        self.store.close()
        self.metrics.close()
        if self._store_lock is not None:
            self._store_lock.close()  # another trainer may take the store now
        from grpo_server.training.distributed import finish

        finish()  # several ranks: they wait here after rank 0's stop, then all leave together (else nothing)
        durable = f"latest checkpoint step {loop.checkpoint_step}" if loop is not None else "no step run"
        if self.control.state.value == "failed":  # the drain's own checkpoint may be what failed
            log.warning("stopped; the run had failed (%s); %s", self.control.error, durable)
        else:
            log.info("stopped; %s", durable)


class _LazyExporter:
    """The API's exporter before the model has loaded: exports are refused until then, and GetExport
    answers from the store (the exports of earlier processes)."""

    target: ExportManager | None = None

    def __init__(self, records: ExportRecords) -> None:
        self.records = records

    def start(self, destination: str | None, wait: bool) -> Any:
        if self.target is None:
            raise RuntimeError("the model is still loading; export once the run is ready")
        return self.target.start(destination, wait)

    def get(self, export_id: str) -> Any:
        return self.records.get(export_id) if self.target is None else self.target.get(export_id)

    def finish(self, timeout: float) -> list[Any]:
        return [] if self.target is None else self.target.finish(timeout)

    def page(self, state: str | None, before: int, limit: int) -> tuple[list[Any], int]:
        if self.target is not None:
            return self.target.page(state, before, limit)
        return page_of(self.records.stored(state, before, limit + 1), limit)
