"""``lora-embedding train``: train a learned embedding on a catalogued corpus."""

import logging
import os
import sys
import time

from .options import fail, print_json, run_guarded

logger = logging.getLogger(__name__)


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "train", help="train a learned embedding on a catalogued LoRA corpus",
        description=(
            "Train the PCA + Transformer encoder on the LoRAs of one family listed in a corpus "
            "catalog, with a cosine triplet loss and exact Gram distillation, then save it."
        ),
    )
    parser.add_argument("--corpus", required=True, metavar="DIR", help="the corpus folder")
    parser.add_argument("--catalog", metavar="FILE", help="the catalog JSON (default: DIR/catalog.json)")
    parser.add_argument("--out", required=True, metavar="DIR", help="the model folder to write")
    parser.add_argument("--family", default="SD1.x", help="base-model family to train on (default: SD1.x)")
    parser.add_argument("--epochs", type=int, default=30, help="passes over the training LoRAs (default: 30)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--holdout-groups", nargs="*", default=[], metavar="GROUP",
                        help="catalog groups left out of training and used as retrieval queries")
    parser.add_argument("--model-id", help="the id stored with embeddings (default: <family>-encoder-custom)")
    parser.add_argument("--json", action="store_true", help="print the training report as JSON")
    parser.set_defaults(func=lambda args: run_guarded(run, args))


def _training_report(model, items, holdout):
    from ..evaluation import cosine_matrix, retrieval_metrics, retrieval_queries

    queries = retrieval_queries([item.entry for item in items])
    if holdout:
        queries = [query for query in queries if items[query.index].entry.group in holdout]
    similarity = cosine_matrix(model.transform_many([item.features for item in items]))
    metrics = retrieval_metrics(similarity, queries)
    metrics["query_groups"] = sorted({items[q.index].entry.group for q in queries})
    metrics["in_sample"] = not holdout
    return metrics


def run(args):
    from ..model_io import save_model
    from ..training import TrainingOptions, load_catalog, read_corpus, train_model

    catalog = args.catalog or os.path.join(args.corpus, "catalog.json")
    if not os.path.isdir(args.corpus):
        return fail(f"{args.corpus}: corpus folder not found")
    started = time.monotonic()
    items = read_corpus(load_catalog(catalog, args.corpus), args.family)
    holdout = set(args.holdout_groups)
    unknown = holdout - {item.entry.group for item in items}
    if unknown:
        return fail(f"no {args.family} files of the held-out groups {sorted(unknown)} in {catalog}")
    training = [item for item in items if item.entry.group not in holdout]

    options = TrainingOptions(epochs=args.epochs, seed=args.seed)
    model_id = args.model_id or f"{args.family.lower().replace('.', '')}-encoder-custom"
    model, history = train_model(training, args.family, options, model_id=model_id)
    metrics = _training_report(model, items, holdout)
    metrics["final_loss"] = history[-1] if history else None
    metrics["seconds"] = round(time.monotonic() - started, 1)

    description = {
        "corpus": os.path.basename(os.path.normpath(args.corpus)),
        "files": [item.entry.name for item in training],
        "held_out_groups": sorted(holdout),
        "command": "lora-embedding " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("lora-embedding") else None,
        "options": options.to_dict(),
    }
    save_model(model, args.out, training=description, metrics={"training": metrics})

    if args.json:
        print_json({"model": model_id, "out": args.out, "history": history, "metrics": metrics})
        return 0
    print(f"trained {model_id} on {len(training)} {args.family} files in {metrics['seconds']} s; saved to {args.out}")
    scope = "held-out groups" if holdout else "training files (in-sample)"
    print(f"cross-run retrieval on {scope}: {metrics['queries']} queries, mAP {metrics['map']}, "
          f"recall@5 {metrics['recall_at_5']}, triplet accuracy {metrics['triplet_accuracy']}")
    print(f"final epoch: {history[-1] if history else 'none'}")
    return 0
