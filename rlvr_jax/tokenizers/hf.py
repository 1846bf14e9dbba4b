"""HF `tokenizers` backend of the `Tokenizer` protocol, with Jinja chat templates."""

from __future__ import annotations

from collections.abc import Sequence
import datetime
import json
import pathlib
from typing import Any

import jinja2
import jinja2.ext
import jinja2.sandbox
import tokenizers


def _token_content(entry: Any) -> str | None:
  """tokenizer_config.json writes special tokens as a string or an AddedToken dict."""
  return entry.get("content") if isinstance(entry, dict) else entry


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
  # Jinja's own tojson escapes HTML characters, which chat templates do not expect; this mirrors
  # the filter transformers installs, so templates render the same text.
  return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                    sort_keys=sort_keys)


def _raise_exception(message):
  raise jinja2.exceptions.TemplateError(message)


def compile_chat_template(source: str) -> jinja2.Template:
  """Compiles a chat template in a sandbox (templates ship with downloaded checkpoints).

  The environment matches what transformers' `apply_chat_template` provides: trim_blocks,
  lstrip_blocks, loop controls, a non-escaping `tojson`, `raise_exception` and `strftime_now`.
  """
  env = jinja2.sandbox.ImmutableSandboxedEnvironment(
      trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
  env.filters["tojson"] = _tojson
  env.globals["raise_exception"] = _raise_exception
  env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
  return env.from_string(source)


class HFTokenizer:
  """`rlvr_jax.tokenizers.Tokenizer` over a `tokenizers.Tokenizer`.

  `encode` adds no special tokens (no post-processor template); `decode` drops special tokens
  (and the pad/EOS/BOS ids even where the vocabulary does not mark them special). `pad_id` falls
  back to `eos_id` for vocabularies without a pad token (Llama, SmolLM2), which is safe because
  padding is always masked.
  """

  def __init__(self, tokenizer: tokenizers.Tokenizer, *, eos_id: int, bos_id: int | None = None,
               pad_id: int | None = None, chat_template: str | None = None):
    """
    Args:
      tokenizer: the backend; its post-processor is not used.
      eos_id: end-of-sequence id (the chat turn terminator for chat models).
      bos_id: beginning-of-sequence id, None when the vocabulary has none.
      pad_id: padding id; None means `eos_id`.
      chat_template: Jinja source rendering `messages`; None when the model has none.
    """
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    for name, i in (("eos_id", eos_id), ("bos_id", bos_id), ("pad_id", pad_id)):
      if i is not None and not 0 <= i < size:
        raise ValueError(f"{name}={i} is outside the vocabulary of size {size}")
    self._tok = tokenizer
    self._eos_id, self._bos_id = eos_id, bos_id
    self._pad_id = eos_id if pad_id is None else pad_id
    self._dropped = {i for i in (eos_id, bos_id, self._pad_id) if i is not None}
    self._template_source = chat_template
    self._template = compile_chat_template(chat_template) if chat_template else None

  @classmethod
  def from_dir(cls, path: str | pathlib.Path) -> "HFTokenizer":
    """Reads `tokenizer.json`, plus special tokens and the chat template from
    `tokenizer_config.json` / `special_tokens_map.json` / `chat_template.jinja` where present."""
    path = pathlib.Path(path)
    tok_file = path / "tokenizer.json"
    if not tok_file.exists():
      raise ValueError(f"{tok_file}: missing; an HF tokenizer directory needs tokenizer.json")
    tok = tokenizers.Tokenizer.from_file(str(tok_file))
    config: dict[str, Any] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):  # the latter wins
      if (path / name).exists():
        config.update(json.loads((path / name).read_text()))

    def token_id(key: str) -> int | None:
      content = _token_content(config.get(key))
      if content is None:
        return None
      i = tok.token_to_id(content)
      if i is None:
        raise ValueError(f"{path}: {key} {content!r} is not in {tok_file.name}")
      return i

    eos_id = token_id("eos_token")
    if eos_id is None:
      raise ValueError(f"{path}: no eos_token in tokenizer_config.json or special_tokens_map.json")
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: [{"name": ..., "template": ...}, ...]
      template = {t["name"]: t["template"] for t in template}.get("default")
    if template is None and (path / "chat_template.jinja").exists():
      template = (path / "chat_template.jinja").read_text()
    return cls(tok, eos_id=eos_id, bos_id=token_id("bos_token"), pad_id=token_id("pad_token"),
               chat_template=template)

  @property
  def backend(self) -> tokenizers.Tokenizer:
    return self._tok

  @property
  def vocab_size(self) -> int:
    """Ids are `range(vocab_size)`, added tokens included (the model's embedding may be larger)."""
    return self._tok.get_vocab_size(with_added_tokens=True)

  @property
  def eos_id(self) -> int:
    return self._eos_id

  @property
  def bos_id(self) -> int | None:
    return self._bos_id

  @property
  def pad_id(self) -> int:
    return self._pad_id

  @property
  def chat_template(self) -> str | None:
    return self._template_source

  def encode(self, text: str) -> list[int]:
    """Token ids of `text`, without BOS/EOS; special-token text (e.g. `<|im_start|>`) in `text`
    maps to its single id, as chat-template output needs."""
    return self._tok.encode(text, add_special_tokens=False).ids

  def decode(self, ids: Sequence[int]) -> str:
    return self._tok.decode([int(i) for i in ids if int(i) not in self._dropped],
                            skip_special_tokens=True)

  def id_to_piece(self, i: int) -> str:
    """The vocabulary entry, in the backend's spelling (byte-level BPE writes a space as 'Ġ')."""
    piece = self._tok.id_to_token(int(i))
    if piece is None:
      raise ValueError(f"id {i} is outside the vocabulary of size {self.vocab_size}")
    return piece

  def chat(self, messages: list[dict], add_generation_prompt: bool = True, **kwargs) -> str:
    """Renders `messages` ([{'role': ..., 'content': ...}, ...]) with the chat template.

    `add_generation_prompt` appends the assistant turn header; extra keyword arguments reach the
    template (e.g. `enable_thinking` for Qwen3). The result already holds the template's special
    tokens (BOS where the template writes it), so encode it with `encode`, adding nothing.

    Raises:
      NotImplementedError: the tokenizer has no chat template.
    """
    if self._template is None:
      raise NotImplementedError("this tokenizer has no chat template")
    specials = {name: None if i is None else self._tok.id_to_token(i) for name, i in
                (("bos_token", self._bos_id), ("eos_token", self._eos_id),
                 ("pad_token", self._pad_id))}
    return self._template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                 **specials, **kwargs)
