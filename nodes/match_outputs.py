"""Turn search results into the outputs the search nodes share: names, scores, table and preview grid."""

from dataclasses import dataclass

from .preview_grid import image_to_tensor, render_grid

__all__ = ["MatchOutputs", "match_outputs", "node_error"]


@dataclass
class MatchOutputs:
    """Search results in the forms the nodes output.

    Attributes
    ----------
    names : list of str
        ComfyUI LoRA names (``LoraLoader`` choices), best first.
    scores : list of float
        Cosine similarity of each pick to the query.
    stems : list of str
        File names without folder and ending, as ``<lora:stem:1>`` tags use.
    table : str
        One ``score  name`` line per pick.
    grid : torch.Tensor
        The preview grid as an IMAGE ``[1, H, W, 3]``.
    """

    names: list
    scores: list
    stems: list
    table: str
    grid: object

    @property
    def names_text(self):
        """The names, one per line."""
        return "\n".join(self.names)

    @property
    def scores_text(self):
        """The scores with 4 decimals, one per line, in the order of ``names``."""
        return "\n".join(f"{score:.4f}" for score in self.scores)


def match_outputs(service, matches, captions=None):
    """Build :class:`MatchOutputs` from ``Match`` objects.

    Parameters
    ----------
    service : LibraryService
        Maps entries to ComfyUI names.
    matches : list of Match
    captions : list of str, optional
        Second caption line per grid cell. Defaults to ``cosine <score>``.
    """
    entries = [match.entry for match in matches]
    names = service.comfy_names(entries)
    scores = [float(match.score) for match in matches]
    if captions is None:
        captions = [f"cosine {score:.3f}" for score in scores]
    table = "\n".join(f"{score:.4f}  {name}" for score, name in zip(scores, names))
    grid = render_grid([(name, entry.preview, caption) for name, entry, caption in zip(names, entries, captions)])
    return MatchOutputs(names, scores, [entry.stem for entry in entries], table, image_to_tensor(grid))


def node_error(node_name, exc):
    """Return a ``ValueError`` for the user, prefixed with the node's display name."""
    return ValueError(f"{node_name}: {exc}")
