"""``lora-embedding clusters`` and ``lora-embedding map``."""

import os

from ..errors import LoraEmbeddingError
from .options import add_library_options, open_library, print_json, print_table, run_guarded
from .search_commands import ensure_index

MAX_MEMBERS_SHOWN = 8
"""The table lists this many members per cluster; --json lists all."""


def _add_cluster_options(parser):
    add_library_options(parser)
    parser.add_argument("-k", "--clusters", dest="n_clusters", type=int, metavar="N",
                        help="number of clusters (default: chosen automatically by silhouette score)")
    parser.add_argument("--family", metavar="F",
                        help="base-model family to cluster, such as SD1.x or SDXL (default: the largest)")
    parser.add_argument("--refresh", action="store_true", help="update the index first (it is always built when empty)")


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "clusters", help="group the library's LoRAs by style and name each group",
        description="Group the LoRAs of one base-model family by their embeddings and name each group "
                    "after shared training tags or file-name words.",
    )
    _add_cluster_options(parser)
    parser.set_defaults(func=lambda args: run_guarded(run_clusters, args))

    parser = subparsers.add_parser(
        "map", help="draw the library's clusters as a 2-D map (PNG)",
        description="Draw every LoRA of one base-model family as a point on a 2-D map, coloured by cluster.",
    )
    _add_cluster_options(parser)
    parser.add_argument("--out", required=True, metavar="FILE.png", help="the PNG file to write (1200×900 pixels)")
    parser.add_argument("--layout", choices=("auto", "pca", "tsne"), default="auto",
                        help="2-D projection: PCA, t-SNE, or auto (t-SNE for 30 to 5000 LoRAs; default: auto)")
    parser.add_argument("--title", help="image title (default: family and counts)")
    parser.set_defaults(func=lambda args: run_guarded(run_map, args))


def cluster_from_args(library, args, layout="pca"):
    """Return the :class:`ClusterResult` the arguments request.

    Raises
    ------
    LoraEmbeddingError
        When the index contains no embedded LoRA, or none of the requested family.
    """
    if args.n_clusters is not None and args.n_clusters < 1:
        raise LoraEmbeddingError(f"-k {args.n_clusters} is invalid; give a number of clusters of at least 1")

    ensure_index(library, args)
    families = library.families()
    if not families:
        raise LoraEmbeddingError("the index contains no embedded LoRA; run `lora-embedding index` first")
    if args.family is not None and args.family not in families:
        known = ", ".join(f"{name} ({count})" for name, count in sorted(families.items()))
        raise LoraEmbeddingError(f"no LoRA of family {args.family!r} in the index; families: {known}")

    result = library.clusters(family=args.family, n_clusters=args.n_clusters)
    result.layout = layout
    return result


def run_clusters(args):
    library = open_library(args)
    result = cluster_from_args(library, args)
    if args.json:
        print_json([cluster.to_json() for cluster in result.clusters])
        return 0

    total = sum(cluster.size for cluster in result.clusters)
    print(f"{total} {result.family} LoRAs in {len(result.clusters)} clusters:")
    rows = []
    for cluster in result.clusters:
        names = [member.name for member in cluster.members]
        member_list = ", ".join(names[:MAX_MEMBERS_SHOWN])
        if len(names) > MAX_MEMBERS_SHOWN:
            member_list += f", … (+{len(names) - MAX_MEMBERS_SHOWN})"
        rows.append((cluster.id, cluster.size, cluster.name, member_list))
    print_table(rows, ["id", "size", "name", "members"])
    return 0


def run_map(args):
    from ..map_image import render_map

    folder = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(folder):
        raise LoraEmbeddingError(f"cannot write {args.out}: folder {folder} does not exist")

    library = open_library(args)
    result = cluster_from_args(library, args, layout=args.layout)
    image = render_map(result, args.out, title=args.title)
    if args.json:
        print_json({"path": os.path.abspath(args.out), "width": image.width, "height": image.height,
                    **result.to_json()})
    else:
        print(f"wrote {args.out} ({image.width}×{image.height}): "
              f"{len(result.assignments)} {result.family} LoRAs in {len(result.clusters)} clusters")
    return 0
