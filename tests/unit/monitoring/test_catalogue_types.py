"""The typed handles on the catalogue's families say what each family is: a histogram's handle is a
``Family[HistogramSeries]`` (so ``.observe`` type-checks), every other a ``Family[Series]``."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from agentic_backend.metricstore.families import Family, HistogramSeries, MetricType, Series
from agentic_backend.monitoring.catalogue import CATALOGUE, GENAI_CATALOGUE, BuiltinMetrics, GenAIMetrics


@pytest.mark.parametrize(("handles", "specs"), [(BuiltinMetrics, CATALOGUE), (GenAIMetrics, GENAI_CATALOGUE)])
def test_each_handle_is_typed_by_its_specs_kind(handles: type, specs: tuple[object, ...]) -> None:
    hints = typing.get_type_hints(handles)
    names = [f.name for f in dataclasses.fields(handles) if f.name != "genai"]
    assert len(names) == len(specs)
    for name, spec in zip(names, specs, strict=True):
        expected = HistogramSeries if spec.type is MetricType.HISTOGRAM else Series
        assert hints[name] == Family[expected], f"{name} ({spec.name}, a {spec.type.value})"
