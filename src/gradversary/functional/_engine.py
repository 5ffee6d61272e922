"""Which inputs of a custom autograd node the running backward pass will use."""

from __future__ import annotations

import torch


def wanted_inputs(ctx, args_are_tensors: tuple[bool, ...]) -> tuple[bool, ...]:
    """Per argument of a custom Function: does the running backward pass need its gradient?

    ``args_are_tensors`` says which of ``forward``'s arguments were tensors (the node has an
    edge for each of those only).

    ``ctx.needs_input_grad`` says only which inputs require grad. During
    ``torch.autograd.grad(out, x)`` a parameter requires grad but its gradient is not wanted;
    computing it anyway (and, under ``create_graph``, recording it) is wasted work. The engine
    knows (``torch._C._will_engine_execute_node``, what ``torch.utils.checkpoint`` uses); it
    cannot answer for a leaf that is itself an input of ``autograd.grad``, which is then wanted.
    """
    edges = iter(ctx.next_functions)
    out = []
    for need, is_tensor in zip(ctx.needs_input_grad, args_are_tensors):
        node = next(edges)[0] if is_tensor else None
        if not need or node is None:
            out.append(False)
            continue
        try:
            out.append(bool(torch._C._will_engine_execute_node(node)))
        except (RuntimeError, AttributeError):
            out.append(True)
    return tuple(out)
