"""ComfyUI's list of LoRA names, as a combo input and as an output type that links to ``LoraLoader``."""

__all__ = ["LoraNameList", "lora_names"]


def lora_names():
    """Return ``folder_paths.get_filename_list("loras")``, the choices of ``LoraLoader.lora_name``."""
    import folder_paths

    return list(folder_paths.get_filename_list("loras"))


class LoraNameList(list):
    """The socket type of an output that carries a LoRA name: ComfyUI's current ``loras`` list.

    ComfyUI 0.3.64 checks a link with ``received_type != input_type``, and a
    combo's type is its list of choices. ComfyUI caches a node's output
    types when it first reads them, so a plain list would stop matching
    ``LoraLoader.lora_name`` once a LoRA is added or removed. This list
    compares equal to any list with the same items as :func:`lora_names`
    returns at the time of the check.
    """

    def __eq__(self, other):
        if isinstance(other, list):
            return list(other) == lora_names()
        return NotImplemented

    def __ne__(self, other):
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    __hash__ = None
