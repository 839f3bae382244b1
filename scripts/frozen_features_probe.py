"""How much of a pair task a frozen backbone's features carry (issue #19, prompt defenses).

The prompt defenses (prompt-tuning, PEAFT) keep the backbone frozen and train only virtual
tokens and the head. This probe fits scikit-learn's logistic regression on the frozen
mean-pooled features of the cross-encoded pairs (``[CLS] s1 [SEP] s2 [SEP]``, as the
classifier sees them, no prompt) and prints dev ACC and the predicted share of the positive
class (label 1) per inverse regularisation C: when it stays near the majority class, a
head on these features has nothing to learn from and the virtual tokens must do all the
work. Usage::

    python scripts/frozen_features_probe.py --task mrpc [--train-examples 4000] [--model minilm]
"""

from __future__ import annotations

import argparse
import sys


def features(tok, model, df, task, max_length: int, batch_size: int = 64):
    """Mean-pooled last hidden states [N, d] of ``df``'s texts (frozen, no prompt)."""
    import torch

    from robustbench_nlp.backbones import pool
    from robustbench_nlp.training import texts_of

    texts = texts_of(df, task)
    out = []
    with torch.inference_mode():
        for s in range(0, len(texts), batch_size):
            segs = list(zip(*texts[s:s + batch_size]))
            enc = tok(*[list(x) for x in segs], padding=True, truncation=True,
                      max_length=max_length, return_tensors="pt")
            hidden = model.base_encoder(**enc).last_hidden_state
            out.append(pool(hidden, enc["attention_mask"], "mean"))
    return torch.cat(out).numpy()


def main(argv: list[str] | None = None) -> int:
    from sklearn.linear_model import LogisticRegression

    from robustbench_nlp.backbones import load_backbone
    from robustbench_nlp.tasks import get_task, load_split

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", required=True)
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--train-examples", type=int, default=4000)
    args = ap.parse_args(argv)
    task = get_task(args.task)
    tok, model, _ = load_backbone(args.model, task.num_labels, None)
    model.eval()
    train, _ = load_split(task, "train", None)
    dev, _ = load_split(task, "validation", None)
    train = train.sample(min(len(train), args.train_examples), random_state=0)
    x_train = features(tok, model, train, task, task.max_length)
    x_dev = features(tok, model, dev, task, task.max_length)
    gold = dev["label"].to_numpy()
    print(f"{task.name}: {len(train)} train, {len(dev)} dev; gold share of label 1 "
          f"({task.label_names[1]}) {100 * gold.mean():.1f}%")
    for c in (0.1, 1.0, 10.0, 100.0):
        pred = LogisticRegression(C=c, max_iter=3000).fit(x_train, train["label"]).predict(x_dev)
        print(f"C={c:g}: ACC {100 * (pred == gold).mean():.2f}, predicted label 1 "
              f"{100 * pred.mean():.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
