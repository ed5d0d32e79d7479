"""The knowledge base's infrastructure against its code: the vector index, and what the profiles build shares.

The Firestore emulator answers a prefiltered vector query without any index;
Firestore refuses it unless a composite index has exactly its equality
fields and its vector field with the query's dimension. So the query the
code really builds (FirestoreKnowledge.nearest, turned into its protobuf
without a request) is compared with google_firestore_index.knowledge, and
the dimension with the setting the processor and the profiles build read.
Each check also runs on a copy of terraform/ or of cloudbuild-profiles.yaml
with one thing changed, and must fail there.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore
from google.cloud.firestore_v1.vector_query import VectorQuery

from shared.adapters.knowledge_store import VECTOR_QUERY, FirestoreKnowledge
from shared.config import Settings
from tests.infra.test_terraform import REPO, TERRAFORM, Expr, TfConfig, _service_env, load_config

PROFILES_BUILD = REPO / "cloudbuild-profiles.yaml"
# Substitutions of the build that are not settings shared with the processor.
BUILD_OWN = {"_REGION", "_REPOSITORY", "_IMAGE_TAG", "_PROFILES_FILE"}


def built_query(settings: Settings) -> Any:
    """The StructuredQuery FirestoreKnowledge.nearest sends, captured before any request is made."""
    client = firestore.Client(project="p", credentials=AnonymousCredentials())
    captured: list[Any] = []

    def stream(self: VectorQuery, *args: object, **kwargs: object) -> list[Any]:
        captured.append(self._to_protobuf())
        return []

    original = VectorQuery.stream
    VectorQuery.stream = stream  # type: ignore[method-assign]
    try:
        store = FirestoreKnowledge(lambda: client, settings.knowledge_collection)
        store.nearest("whatsapp:+1555", "v1", [0.5] * settings.openai_embedding_dimensions, 4, 0.7)
    finally:
        VectorQuery.stream = original  # type: ignore[method-assign]
    assert len(captured) == 1, "nearest() made no vector query"
    return captured[0]


def _fields(index: dict[str, Any]) -> list[dict[str, Any]]:
    return list(index.get("fields", []))


def check_vector_index(config: TfConfig, settings: Settings = Settings()) -> None:
    query = built_query(settings)
    index = config.resource("google_firestore_index", "knowledge")
    assert config.resolve(index.get("collection")) == settings.knowledge_collection == query.from_[0].collection_id, (
        f"the index is on {config.resolve(index.get('collection'))!r}, the code queries "
        f"{query.from_[0].collection_id!r}"
    )
    filters = [f.field_filter for f in query.where.composite_filter.filters] or [query.where.field_filter]
    equality = [f.field.field_path for f in filters if f.op.name == "EQUAL"]
    assert equality and len(equality) == len(filters), f"the query filters with {[f.op.name for f in filters]}"
    fields = _fields(index)
    ordered = [f["field_path"] for f in fields if "order" in f and f["field_path"] != "__name__"]
    assert ordered == equality, f"the index's filter fields are {ordered}, the query filters on {equality}"
    assert all(f.get("order") == "ASCENDING" for f in fields if "order" in f), "equality fields are ASCENDING"
    vector = [f for f in fields if f.get("vector_config")]
    assert len(vector) == 1 and fields[-1] is vector[0], "the index must end with exactly one vector field"
    nearest = query.find_nearest
    assert vector[0]["field_path"] == nearest.vector_field.field_path, (
        f"the index's vector field is {vector[0]['field_path']!r}, the query's {nearest.vector_field.field_path!r}"
    )
    assert nearest.distance_measure.name == VECTOR_QUERY.distance_measure == "COSINE"
    config_block = vector[0]["vector_config"][0]
    assert "flat" in config_block, "the vector index must be a flat index (the only kind Firestore has)"
    dimension = config_block.get("dimension")
    assert dimension == Expr("var.openai_embedding_dimensions"), (
        f"the index's dimension is {dimension!r}, not the variable that sets OPENAI_EMBEDDING_DIMENSIONS"
    )
    sent = len(nearest.query_vector.map_value.fields["value"].array_value.values)
    assert sent == settings.openai_embedding_dimensions, f"the query vector has {sent} dimensions"
    assert config.resolve(dimension) == settings.openai_embedding_dimensions, (
        f"terraform's default dimension {config.resolve(dimension)} differs from the setting's "
        f"{settings.openai_embedding_dimensions}"
    )
    env = _service_env(config, "processor")
    assert env.get("OPENAI_EMBEDDING_DIMENSIONS") == Expr("tostring(var.openai_embedding_dimensions)"), (
        "processor_fn's OPENAI_EMBEDDING_DIMENSIONS is not the index's variable"
    )
    assert env.get("KNOWLEDGE_COLLECTION") == index.get("collection"), (
        "processor_fn searches another collection than the index covers"
    )


def check_unindexed_fields(config: TfConfig) -> None:
    exempt = {
        body["field"]: body
        for body in config.of_type("google_firestore_field").values()
        if body.get("collection") == Expr("var.knowledge_collection")
    }
    assert set(exempt) == set(VECTOR_QUERY.unindexed_fields), (
        f"single-field exemptions on the chunks: {sorted(exempt)}, the code expects {VECTOR_QUERY.unindexed_fields}"
    )
    for name, body in exempt.items():
        assert body.get("index_config") == [{}], f"{name}: index_config must be empty (no single-field index)"


def _build(text: str) -> dict[str, Any]:
    return yaml.safe_load(text)


def check_profiles_build_settings(config: TfConfig, build_text: str) -> None:
    """Every setting the profiles build gets is the processor's, from the same variable, and the defaults agree."""
    shared = config.locals.get("profiles_build")
    assert isinstance(shared, dict) and shared, "local.profiles_build is missing (terraform/knowledge.tf)"
    output = config.outputs.get("profiles_build_substitutions", {}).get("value")
    assert output and "local.profiles_build" in str(output), "output profiles_build_substitutions is missing"
    processor = _service_env(config, "processor")
    for name, value in shared.items():
        assert value == Expr(f"local.env.processor.{name}") and name in processor, (
            f"the profiles build gets {name} = {value!r}, not processor_fn's {name}"
        )
    build = _build(build_text)
    declared = set(build.get("substitutions", {})) - BUILD_OWN
    assert declared == {f"_{name}" for name in shared}, (
        f"cloudbuild-profiles.yaml declares {sorted(declared)}, terraform passes {sorted('_' + n for n in shared)}"
    )
    for step in build["steps"]:
        env = dict(item.split("=", 1) for item in step.get("env", []))
        for name in shared:
            assert env.get(name) == f"${{_{name}}}", f"step {step.get('id')}: {name} is {env.get(name)!r}"
        assert env.get("SECRET_SOURCE") == "secretmanager", f"step {step.get('id')} reads no secret from Secret Manager"
    for name in shared:
        value = processor[name]
        default = build["substitutions"][f"_{name}"]
        wanted = config.resolve(Expr(re.sub(r"^tostring\((.*)\)$", r"\1", str(value))))
        if isinstance(value, Expr) and value.startswith("var."):
            assert str(default) == str(wanted), f"_{name} defaults to {default!r}, terraform to {wanted!r}"
        elif isinstance(value, Expr) and value.startswith("tostring(var."):
            assert float(default) == float(wanted), f"_{name} defaults to {default!r}, terraform to {wanted!r}"


@pytest.fixture(scope="module")
def config() -> TfConfig:
    return load_config()


def test_the_vector_index_is_the_one_the_code_queries(config: TfConfig) -> None:
    check_vector_index(config)


def test_the_chunks_text_and_vector_have_no_single_field_index(config: TfConfig) -> None:
    check_unindexed_fields(config)


def test_the_profiles_build_embeds_as_the_processor_searches(config: TfConfig) -> None:
    check_profiles_build_settings(config, PROFILES_BUILD.read_text())


def test_a_setting_other_than_the_default_dimension_is_caught(config: TfConfig) -> None:
    with pytest.raises(AssertionError, match="default dimension"):
        check_vector_index(config, Settings(openai_embedding_dimensions=768))


def _sub(pattern: str, replacement: str) -> Callable[[str], str]:
    def apply(text: str) -> str:
        changed, count = re.subn(pattern, replacement, text, count=1, flags=re.MULTILINE)
        assert count == 1, f"{pattern!r} not found"
        return changed

    return apply


TERRAFORM_BREAKS = {
    "index-filters-another-field": ("knowledge.tf", _sub(r'field_path = "corpus"', 'field_path = "business"'),
                                    check_vector_index, r"filter fields are \['business'\]"),
    "index-dimension-fixed": ("knowledge.tf", _sub(r"dimension = var\.openai_embedding_dimensions", "dimension = 768"),
                              check_vector_index, r"not the variable"),
    "index-on-another-vector": ("knowledge.tf", _sub(r'field_path = "embedding"', 'field_path = "vector"'),
                                check_vector_index, r"vector field is 'vector'"),
    "processor-other-dimensions": ("locals.tf", _sub(r"(OPENAI_EMBEDDING_DIMENSIONS\s+=) tostring\(var\.\w+\)",
                                                     r'\1 "768"'), check_vector_index, r"not the index's variable"),
    "text-indexed": ("knowledge.tf", _sub(r'toset\(\["text", "embedding"\]\)', 'toset(["embedding"])'),
                     check_unindexed_fields, r"exemptions"),
}


@pytest.mark.parametrize("name", sorted(TERRAFORM_BREAKS))
def test_terraform_check_fails_when_broken(name: str, tmp_path: Path) -> None:
    file, change, check, expect = TERRAFORM_BREAKS[name]
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM, copy, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"))
    target = copy / file
    target.write_text(change(target.read_text()))
    check(load_config())  # the real configuration passes
    with pytest.raises(AssertionError, match=expect):
        check(load_config(copy))


BUILD_BREAKS = {
    "a-step-embeds-other-dimensions": (_sub(r"OPENAI_EMBEDDING_DIMENSIONS=\$\{_OPENAI_EMBEDDING_DIMENSIONS\}",
                                            "OPENAI_EMBEDDING_DIMENSIONS=768"), r"OPENAI_EMBEDDING_DIMENSIONS is"),
    "default-differs-from-terraform": (_sub(r'_OPENAI_EMBEDDING_DIMENSIONS: "1536"',
                                            '_OPENAI_EMBEDDING_DIMENSIONS: "3072"'),
                                       r"defaults to '3072'"),
    "a-setting-missing": (_sub(r"^  _KNOWLEDGE_COLLECTION: knowledge_chunks\n", ""), r"declares"),
}


@pytest.mark.parametrize("name", sorted(BUILD_BREAKS))
def test_profiles_build_check_fails_when_broken(name: str, config: TfConfig) -> None:
    change, expect = BUILD_BREAKS[name]
    with pytest.raises(AssertionError, match=expect):
        check_profiles_build_settings(config, change(PROFILES_BUILD.read_text()))
