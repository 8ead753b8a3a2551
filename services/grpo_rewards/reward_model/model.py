"""A learned reward model: `AutoModelForSequenceClassification` with one label over the chat-templated
prompt + completion, as TRL and OpenRLHF score them (logits[:, 0], right padding).

Pure model code: no gRPC, no threads. `RewardModel.score_texts` is deterministic and batch-invariant
(a text scores the same alone or padded in a batch, within float32 rounding). Special-token strings inside
messages are scored as plain text, not as the template's structure (see `special_text`).
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .special_text import Formatted, SpecialText

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Used when neither the flag nor the model says how long an input may be.
FALLBACK_MAX_LENGTH = 4096
# Which end of an over-long text is cut. `left` (the default) drops the start of the prompt first and keeps
# the end of the completion: the final answer, and the template's closing tokens that last-token pooling
# reads. `right` (most tokenizers' own default) cuts the end of the completion instead.
TRUNCATION_SIDES = ("left", "right")
# An over-long text is not tokenized whole (a 3-million-character completion held the model thread for
# seconds): only a window at its kept end, first (max length + margin) * WINDOW_CHARS_PER_TOKEN characters,
# four times larger each time it holds fewer than max length + margin tokens, the whole text at the latest.
# The margin keeps the tokens that survive truncation well away from where the window was cut.
WINDOW_CHARS_PER_TOKEN = 8
WINDOW_MARGIN_TOKENS = 64
# An architecture name with a task head (`LlamaForCausalLM`, `GPT2LMHeadModel`, `BertForMaskedLM`), as
# opposed to a bare base model (`BertModel`).
_TASK_HEAD = re.compile(r"For[A-Z]\w*$|LMHeadModel$")


@dataclass(frozen=True)
class Scored:
    """One text's reward (the classifier's single logit, unbounded) and whether it was cut to fit."""

    score: float
    truncated: bool
    tokens: int


def pick_device(device: str) -> torch.device:
    """`auto` -> CUDA when available, else CPU; `cpu`/`cuda`/`cuda:N` as given. ValueError for a string
    torch does not take as a device, or a CUDA device this machine does not have."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        picked = torch.device(device)
    except RuntimeError as exc:  # torch's way of refusing a device string
        raise ValueError(f"--device {device}: not a device (expected auto, cpu, cuda or cuda:N): {exc}") from None
    if picked.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: CUDA is not available on this machine")
        count = torch.cuda.device_count()
        if picked.index is not None and picked.index >= count:
            raise ValueError(f"--device {device}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    return picked


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """`auto` -> bfloat16 on CUDA, float32 on CPU (exact batch invariance); else the named dtype."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return DTYPES[dtype]
    except KeyError:
        raise ValueError(f"--dtype {dtype}: expected auto, {', '.join(DTYPES)}") from None


# Files that change scores, hashed whole by model_identity (the weights are sampled).
_IDENTITY_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "chat_template.jinja", "chat_template.json", "added_tokens.json", "vocab.txt", "vocab.json",
                   "merges.txt", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model")
_WEIGHT_SAMPLE_BYTES = 1 << 20


def model_identity(path: Path) -> str:
    """`<dir name>@<12 hex>`: a short hash of the config, the tokenizer and chat template files, and of each
    weight file's name, size, first and last MiB, so two replicas serving different weights (a model
    trained again has the same shapes, so the same file sizes) report different versions without
    hashing gigabytes."""
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.name in _IDENTITY_FILES:
            h.update(f"{f.name}\0".encode() + f.read_bytes())
        elif f.suffix in (".safetensors", ".bin"):
            size = f.stat().st_size
            h.update(f"{f.name}:{size}\0".encode())
            with f.open("rb") as weights:
                h.update(weights.read(_WEIGHT_SAMPLE_BYTES))
                if size > _WEIGHT_SAMPLE_BYTES:
                    weights.seek(max(_WEIGHT_SAMPLE_BYTES, size - _WEIGHT_SAMPLE_BYTES))
                    h.update(weights.read())
    return f"{path.name}@{h.hexdigest()[:12]}"


def check_reward_model_config(config: object, path: Path) -> None:
    """ValueError unless `config` can be a one-label reward model: a sequence classifier must have exactly
    one label (a two-label classifier's head cannot be loaded as a one-score head)."""
    archs = list(getattr(config, "architectures", None) or [])
    labels = int(getattr(config, "num_labels", 1))
    if any(a.endswith("ForSequenceClassification") for a in archs) and labels != 1:
        names = ", ".join(str(v) for v in (getattr(config, "id2label", None) or {}).values())
        raise ValueError(f"--model {path}: a sequence classifier with {labels} labels ({names}); a reward model "
                         "has exactly one label (num_labels 1: one score per text)")


def check_head_loaded(missing: Sequence[str], config: object, path: Path, seed: int) -> None:
    """ValueError when weights are missing from a checkpoint saved for another task (a causal LM: its
    scores would come from an untrained head); a warning when they are missing from a bare base model
    (an encoder given a fresh, seeded head, as documented)."""
    if not missing:
        return
    archs = list(getattr(config, "architectures", None) or [])
    other_task = [a for a in archs if _TASK_HEAD.search(a) and not a.endswith("ForSequenceClassification")]
    if other_task:
        raise ValueError(f"--model {path}: the checkpoint is a {other_task[0]}, not a sequence classifier: it has "
                         f"no weights for {', '.join(sorted(missing))}, so every score would come from an untrained "
                         "head. Give a reward model saved as *ForSequenceClassification with one label")
    log.warning("the checkpoint has no weights for %s: initialised with --seed %d; scores mean nothing until "
                "this head is trained", ", ".join(sorted(missing)), seed)


class RewardModel:
    """A one-label sequence classifier and its tokenizer, loaded from a local directory (offline)."""

    def __init__(self, path: str | Path, *, device: str = "auto", dtype: str = "auto",
                 max_length: int | None = None, seed: int = 0, truncation_side: str = "left") -> None:
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        self.path = Path(path)
        if truncation_side not in TRUNCATION_SIDES:
            raise ValueError(f"--truncation-side {truncation_side}: expected {' or '.join(TRUNCATION_SIDES)}")
        if not (self.path / "config.json").is_file():
            raise FileNotFoundError(f"--model {self.path}: no config.json there (expected a Hugging Face model directory)")
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        config = AutoConfig.from_pretrained(self.path, local_files_only=True)
        check_reward_model_config(config, self.path)
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        # Seeded so that a head missing from the checkpoint (an encoder loaded as a classifier) is
        # initialised the same way on every replica and every restart.
        torch.manual_seed(seed)
        self.model, info = AutoModelForSequenceClassification.from_pretrained(
            self.path, num_labels=1, local_files_only=True, dtype=self.dtype, output_loading_info=True)
        check_head_loaded(sorted(info.get("missing_keys") or ()), config, self.path, seed)
        self.model.to(self.device).eval()

        # Positions of RoBERTa-like encoders start after the pad id: max_position_embeddings counts
        # padding_idx + 1 positions no token can have (RoBERTa's 514 are 512 tokens).
        embeddings = getattr(getattr(self.model, "base_model", None), "embeddings", None)
        padding_idx = getattr(embeddings, "padding_idx", None)
        position_offset = int(padding_idx) + 1 if padding_idx is not None and hasattr(embeddings, "position_embeddings") else 0
        self._set_pad_token()
        self.tokenizer.padding_side = "right"
        self.tokenizer.truncation_side = truncation_side
        self.truncation_side = truncation_side

        positions = getattr(self.model.config, "max_position_embeddings", None)
        limits = [n for n in (positions - position_offset if positions else None,
                              self.tokenizer.model_max_length if self.tokenizer.model_max_length < 1e9 else None)
                  if n]
        model_max = min(limits) if limits else FALLBACK_MAX_LENGTH
        self.max_length = min(max_length, model_max) if max_length else model_max
        self.has_chat_template = bool(getattr(self.tokenizer, "chat_template", None))
        if self.has_chat_template:
            try:  # a template that cannot render a plain exchange is broken for every item: say so now
                self.format([("user", "hi")], "hello")
            except Exception as exc:
                raise ValueError(f"--model {self.path}: its chat template fails on a plain user/assistant "
                                 f"exchange: {type(exc).__name__}: {exc}") from None
        self.special = SpecialText(self.tokenizer)
        self._warned_unaligned = False
        self.identity = model_identity(self.path)
        log.info("reward model %s on %s (%s), max length %d (truncated on the %s), %s", self.identity,
                 self.device, str(self.dtype).removeprefix("torch."), self.max_length, truncation_side,
                 "chat template" if self.has_chat_template else "no chat template: plain concatenation")

    def _set_pad_token(self) -> None:
        """The pad token of a batch, also told to the model (its last-token pooling finds the last token
        that is not the pad): the tokenizer's; else the checkpoint's own `pad_token_id` (what the model
        pooled with in training, and what Hugging Face pools with); else EOS, as TRL does (decoder models
        often ship without a pad token); else the unknown token. Set on every config the model reads it
        from (composite models such as Gemma 3 pool with their text config's)."""
        tok, config = self.tokenizer, self.model.config
        configs = list({id(c): c for c in (config, config.get_text_config())}.values())
        configured = next((c.pad_token_id for c in configs if isinstance(getattr(c, "pad_token_id", None), int)), None)
        if tok.pad_token_id is None:
            if configured is not None and 0 <= configured < len(tok):
                tok.pad_token = tok.convert_ids_to_tokens(configured)
            elif tok.eos_token is not None:
                tok.pad_token = tok.eos_token
            elif tok.unk_token is not None:
                tok.pad_token = tok.unk_token
            if tok.pad_token_id is None:
                raise ValueError(f"--model {self.path}: neither the tokenizer (no pad, EOS or unknown token) nor "
                                 "the config (no pad_token_id) names a token to pad a batch with")
        for c in configs:
            c.pad_token_id = tok.pad_token_id

    def format(self, prompt: Sequence[tuple[str, str]], completion: str) -> str:
        """The text the model scores: the chat template over the prompt messages plus an assistant
        message holding the completion, or, without a template, the contents joined by newlines."""
        if self.has_chat_template:
            messages = [{"role": r, "content": c} for r, c in prompt] + [{"role": "assistant", "content": completion}]
            text = self.tokenizer.apply_chat_template(messages, tokenize=False)
            return str(text)
        return "\n".join([c for _, c in prompt] + [completion])

    def render(self, prompt: Sequence[tuple[str, str]], completion: str) -> Formatted:
        """`format`'s text, with what tells the special-token strings of the messages (contents and roles:
        read as plain text) from the template's own: `masked` is set when a message holds one (see
        `special_text`). When the template does not render the masked messages in the same places (it
        changes their length, or refuses them), the text is tokenized as it is, with a warning, once."""
        text = self.format(prompt, completion)
        if not any(self.special.holds_special(s) for s in [completion, *(s for message in prompt for s in message)]):
            return Formatted(text)
        if not self.has_chat_template:  # every character is a message's
            return Formatted(text, self.special.mask(text))
        masked = None
        if self.special.locatable:
            try:
                masked = self.format([(self.special.mask(r), self.special.mask(c)) for r, c in prompt],
                                     self.special.mask(completion))
            except Exception:  # the template refused the masked messages: treated as unaligned below
                masked = None
        if masked is not None and self.special.aligned(text, masked):
            return Formatted(text, masked)
        if not self._warned_unaligned:
            self._warned_unaligned = True
            log.warning("cannot tell the special-token strings inside messages from this chat template's own "
                        "(%s): such strings are read as special tokens",
                        "the masked messages render differently" if self.special.locatable
                        else "the tokenizer gives no character offsets")
        return Formatted(text)

    def _ids(self, texts: Sequence[Formatted], special: bool, truncate: bool) -> list[list[int]]:
        """Token ids of each text; `special`: add the tokenizer's own special tokens (no chat template);
        `truncate`: cut to `max_length` on `truncation_side`. Texts without special-token strings from
        messages are tokenized together, as they always were."""
        out: list[list[int]] = [[] for _ in texts]
        plain = [i for i, f in enumerate(texts) if f.masked is None]
        cut = {"truncation": True, "max_length": self.max_length} if truncate else {"truncation": False}
        if plain:
            enc = self.tokenizer([texts[i].text for i in plain], add_special_tokens=special, verbose=False, **cut)
            for i, ids in zip(plain, enc["input_ids"], strict=True):
                out[i] = list(ids)
        for i, f in enumerate(texts):
            if f.masked is None:
                continue
            if not self.has_chat_template:  # all of it is message text: no special token may come from it
                out[i] = list(self.tokenizer(f.text, add_special_tokens=special, split_special_tokens=True,
                                             verbose=False, **cut)["input_ids"])
                continue
            ids = self.special.template_ids(f)
            if truncate and len(ids) > self.max_length:
                ids = ids[-self.max_length:] if self.truncation_side == "left" else ids[:self.max_length]
            out[i] = ids
        return out

    def _window(self, text: Formatted, chars: int) -> Formatted:
        """The last `chars` characters of `text` (left truncation keeps its end), or the first (right)."""
        return text.window(-chars) if self.truncation_side == "left" else text.window(0, chars)

    def _bounded(self, texts: Sequence[Formatted], special: bool) -> tuple[list[Formatted], list[int]]:
        """Each text, or for one far over `max_length` a window at its kept end, with the window's token
        count (untruncated, special tokens included). Text up to the first window size is returned whole;
        a window is kept only once it holds at least `max_length + WINDOW_MARGIN_TOKENS` tokens, so the
        text is over the limit and the tokens truncation keeps lie far from the window's cut. Tokenizing
        costs O(window), not O(text), for a huge text."""
        need = self.max_length + WINDOW_MARGIN_TOKENS
        chars = [need * WINDOW_CHARS_PER_TOKEN] * len(texts)
        out = [t if len(t.text) <= c else self._window(t, c) for t, c in zip(texts, chars, strict=True)]
        counts = [len(ids) for ids in self._ids(out, special, truncate=False)]
        for i, text in enumerate(texts):
            while len(out[i].text) < len(text.text) and counts[i] < need:  # too few tokens in the window: widen
                chars[i] *= 4
                out[i] = text if len(text.text) <= chars[i] else self._window(text, chars[i])
                counts[i] = len(self._ids([out[i]], special, truncate=False)[0])
        return out, counts

    @torch.inference_mode()
    def score_texts(self, texts: Sequence[str | Formatted]) -> list[Scored]:
        """Score `texts` in one forward pass: right-padded `[len(texts), longest]` ids with an attention
        mask; inputs over `max_length` tokens are cut on `truncation_side` (left by default: the end of
        the completion is kept) and flagged. A plain `str` is tokenized as it is (special-token strings in
        it are special tokens); `render` gives a `Formatted` in which the messages' are plain text. A text
        with no tokens at all (an empty text, no chat template, a tokenizer adding no special tokens) is
        not run through the model (alone it fails there, padded in a batch it would score garbage): it
        comes back as `Scored(nan, False, 0)`."""
        if not texts:
            return []
        # A chat template writes its own special tokens; a plain text needs the tokenizer's ([CLS]...).
        special = not self.has_chat_template
        bounded, counts = self._bounded([t if isinstance(t, Formatted) else Formatted(t) for t in texts], special)
        out = [Scored(score=math.nan, truncated=False, tokens=0)] * len(texts)
        keep = [i for i, n in enumerate(counts) if n]
        if not keep:
            return out
        ids = self._ids([bounded[i] for i in keep], special, truncate=True)
        padded = self.tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt")
        enc = {k: v.to(self.device) for k, v in padded.items()}
        logits = self.model(**enc).logits  # [batch, 1]
        lengths = enc["attention_mask"].sum(dim=1).tolist()
        scores = logits[:, 0].float().cpu().tolist()
        for i, s, n in zip(keep, scores, lengths, strict=True):
            out[i] = Scored(score=s, truncated=counts[i] > self.max_length, tokens=int(n))
        return out
