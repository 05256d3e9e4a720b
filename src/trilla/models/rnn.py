"""`rnn`: the music study's recurrent network over spectrogram frames (Keras architectures.py).

Input batch norm over the frequency bins, an optional Conv1D front-end, then per entry of `units` a
[SimpleRNN | LSTM | GRU -> batch norm -> dropout] block (every layer but the last returns its sequence,
as in Keras), and the dense output on the last layer's final state. Clips of different lengths are
packed, so padding never reaches the recurrent state.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, PositiveInt
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from trilla.models.head import Head, HeadedModel
from trilla.models.registry import InputSpec, ModelParams, register
from trilla.schema import Section

CELLS = {"simple": (nn.RNN, "SimpleRNN"), "lstm": (nn.LSTM, "LSTM"), "gru": (nn.GRU, "GRU")}


class Conv1DFrontEnd(Section):
    filters: int = Field(ge=1)
    kernel: int = Field(ge=1)


class RNNParams(ModelParams):
    name: Literal["rnn"] = "rnn"
    inputs = ("audio",)
    sequence = True
    cell: Literal["simple", "lstm", "gru"] = "gru"
    units: list[PositiveInt] = Field(default_factory=lambda: [32], min_length=1)
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    bidirectional: bool = False
    input_batch_norm: bool = True
    conv1d: Conv1DFrontEnd | None = Field(None, description="e.g. {filters: 129, kernel: 32}, the study's front-end")

    def summary(self, outputs: int | None = None) -> str:
        """The study's generated name, e.g. GRU_l1_o1_d0.5 (type, layers, outputs, dropout)."""
        kind = ("Bi" if self.bidirectional else "") + CELLS[self.cell][1]
        conv = f"_c{self.conv1d.filters}x{self.conv1d.kernel}" if self.conv1d else ""
        return f"{kind}_l{len(self.units)}{'' if outputs is None else f'_o{outputs}'}_d{self.dropout:g}{conv}"

    def default_optimizer(self) -> str:
        return "rmsprop"


class RNN(HeadedModel):
    def __init__(self, params: RNNParams, spec: InputSpec, num_classes: int):
        super().__init__()
        width = spec.bins
        self.input_norm = nn.BatchNorm1d(width) if params.input_batch_norm else nn.Identity()
        self.front = None
        if params.conv1d:
            self.front = nn.Sequential(nn.Conv1d(width, params.conv1d.filters, params.conv1d.kernel, padding="same"), nn.ReLU())
            width = params.conv1d.filters
        cell = CELLS[params.cell][0]
        directions = 2 if params.bidirectional else 1
        self.layers = nn.ModuleList()
        self.norms = nn.ModuleList()
        for units in params.units:
            self.layers.append(cell(width, units, batch_first=True, bidirectional=params.bidirectional))
            self.norms.append(nn.BatchNorm1d(units * directions))
            width = units * directions
        self.dropout = nn.Dropout(params.dropout)
        self.head = Head(width, num_classes, [], 0.0, spec.metadata)

    def embed(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, frames, bins) -> the last layer's final state after its batch norm and dropout."""
        x = self.input_norm(x.transpose(1, 2))
        if self.front is not None:
            x = self.front(x)
        x = x.transpose(1, 2)
        for i, (layer, norm) in enumerate(zip(self.layers, self.norms)):
            last = i == len(self.layers) - 1
            packed = x if lengths is None else pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            sequence, state = layer(packed)
            if last:
                hidden = state[0] if isinstance(state, tuple) else state  # LSTM returns (h, c)
                x = torch.cat(list(hidden[-(2 if layer.bidirectional else 1):]), dim=1)
                return self.dropout(norm(x))
            if lengths is not None:
                sequence, _ = pad_packed_sequence(sequence, batch_first=True, total_length=x.shape[1])
            x = self.dropout(norm(sequence.transpose(1, 2)).transpose(1, 2))
        raise AssertionError("unreachable: units has at least one layer")


@register(RNNParams)
def rnn(params: RNNParams, spec: InputSpec, num_classes: int, load_weights: bool = True) -> nn.Module:
    return RNN(params, spec, num_classes)
