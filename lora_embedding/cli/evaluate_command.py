"""``lora-embedding evaluate``: measure the embeddings and the baselines on a catalogued corpus."""

import os

from .options import fail, print_json, run_guarded


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "evaluate", help="measure embeddings and baselines on a catalogued LoRA corpus",
        description=(
            "Measure invariance, fidelity to the exact output-side Gram cosine and cross-run "
            "retrieval for the learned model (bundled or --model, and with query groups held out "
            "of training), the training-free path and the baselines, in one run."
        ),
    )
    parser.add_argument("--corpus", required=True, metavar="DIR", help="the corpus folder")
    parser.add_argument("--catalog", metavar="FILE", help="the catalog JSON (default: DIR/catalog.json)")
    parser.add_argument("--model", metavar="DIR", help="a model folder to evaluate instead of the bundled model")
    parser.add_argument("--family", default="SD1.x", help="base-model family to evaluate (default: SD1.x)")
    parser.add_argument("--folds", type=int, default=3,
                        help="folds over groups for the held-out learned model; 0 skips it (default: 3)")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs of each held-out model (default: 30)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--retrieval-only", action="store_true",
                        help="measure only retrieval of the exact Gram, training-free and learned methods")
    parser.add_argument("--json", action="store_true", help="print every number as JSON")
    parser.set_defaults(func=lambda args: run_guarded(run, args))


def run(args):
    from ..evaluation import evaluate_corpus, format_report
    from ..training import TrainingOptions

    if not os.path.isdir(args.corpus):
        return fail(f"{args.corpus}: corpus folder not found")
    catalog = args.catalog or os.path.join(args.corpus, "catalog.json")
    report = evaluate_corpus(
        args.corpus, catalog, family=args.family, model_dir=args.model, folds=args.folds,
        options=TrainingOptions(epochs=args.epochs, seed=args.seed), retrieval_only=args.retrieval_only,
    )
    if args.json:
        print_json(report)
    else:
        print(format_report(report))
    return 0
