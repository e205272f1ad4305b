"""The ten contract endpoints as functions from parameters to JSON bytes.

HTTP plumbing (auth, faults, latency, counting) lives in ``app``; this module is
only what the contract says each endpoint answers, including its errors, so it
can be read side by side with ``testio-api.md``. Callers hold the simulator
lock while calling in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from testio_sync.simulator.model import Product
from testio_sync.simulator.render import (
    Renderer,
    dump,
    feature_payload,
    reject_reason_payloads,
    user_story_payloads,
)
from testio_sync.simulator.world import World

UNPAGED_LIMIT = 150  # without ``page`` the API returns only the newest 150 tests
DEFAULT_PER_PAGE = 25


class ApiProblem(Exception):
    """An error answer: the status code and a message for the JSON error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _envelope(key: str, items: Iterable[bytes]) -> bytes:
    return b'{"' + key.encode() + b'":[' + b",".join(items) + b"]}"


class ContractApi:
    """Answers for one world, serialised by its ``Renderer``."""

    def __init__(self, world: World, renderer: Renderer) -> None:
        self.world = world
        self.renderer = renderer

    def _product(self, product_id: int) -> Product:
        product = self.world.products.get(product_id)
        if product is None:
            raise ApiProblem(404, f"product {product_id} not found")
        return product

    def products(self) -> bytes:
        return dump({"products": [self.renderer.product(pid) for pid in self.world.products]})

    def product(self, product_id: int) -> bytes:
        return dump({"product": self.renderer.product(self._product(product_id).id)})

    def features(self, product_id: int) -> bytes:
        product = self._product(product_id)
        if product.sectioned:
            raise ApiProblem(
                422, f"product {product_id} has sections: ask for features per section"
            )
        return self._features_in(product, product.default_section.id)

    def section_features(self, product_id: int, section_id: int) -> bytes:
        product = self._product(product_id)
        if product.section(section_id) is None:
            raise ApiProblem(404, f"section {section_id} not found in product {product_id}")
        return self._features_in(product, section_id)

    def _features_in(self, product: Product, section_id: int) -> bytes:
        features = self.world.features
        in_section = [
            features[fid]
            for fid in self.world.features_by_product[product.id]
            if section_id in features[fid].section_ids
        ]
        return dump({"features": [feature_payload(f, i) for i, f in enumerate(in_section)]})

    def user_stories(self, product_id: int, query: Mapping[str, str]) -> bytes:
        product = self._product(product_id)
        if "section_id" in query:
            section_id = _int(query["section_id"], "section_id")
            if product.section(section_id) is None:
                raise ApiProblem(404, f"section {section_id} not found in product {product_id}")
        elif product.sectioned:
            raise ApiProblem(400, "section_id is required for a product with sections")
        else:
            section_id = product.default_section.id
        stories = [
            story
            for fid in self.world.features_by_product[product.id]
            if section_id in self.world.features[fid].section_ids
            for story in user_story_payloads(self.world.features[fid])
        ]
        return dump({"user_stories": stories})

    def exploratory_tests(
        self,
        product_id: int,
        query: Mapping[str, str],
        broken: frozenset[int],
        failing: tuple[int, ...] = (),
    ) -> bytes:
        """A page of tests by ``end_at`` descending; without ``page``, the newest 150 only."""
        ordered = self.world.ordered_test_ids(self._product(product_id).id)
        if product_id in failing:
            raise ApiProblem(500, "internal server error")
        if "page" in query:
            page = _int(query["page"], "page", minimum=1)
            per_page = _int(query.get("per_page", str(DEFAULT_PER_PAGE)), "per_page", minimum=1)
            chosen = ordered[(page - 1) * per_page : page * per_page]
        else:
            chosen = ordered[:UNPAGED_LIMIT]
        if broken and not broken.isdisjoint(chosen):
            # The production quirk: one unserialisable test fails every page it is on.
            raise ApiProblem(500, "internal server error")
        return _envelope("exploratory_tests", map(self.renderer.test_bytes, chosen))

    def exploratory_test(self, test_id: int, broken: frozenset[int]) -> bytes:
        if test_id not in self.world.tests:
            raise ApiProblem(404, f"exploratory test {test_id} not found")
        if test_id in broken:
            raise ApiProblem(500, "internal server error")
        return b'{"exploratory_test":' + self.renderer.test_bytes(test_id) + b"}"

    def bugs(self, query: Mapping[str, str], batch_limit: int) -> bytes:
        """Every bug matching all given filters, in one unpaginated answer."""
        filters = {
            name: _int_list(query[name], name)
            for name in ("filter_test_cycle_ids", "filter_product_ids", "filter_section_ids")
            if name in query
        }
        if not filters:
            raise ApiProblem(
                400,
                "one of filter_test_cycle_ids, filter_product_ids, filter_section_ids is required",
            )
        test_ids = filters.get("filter_test_cycle_ids")
        if batch_limit and test_ids is not None and len(test_ids) > batch_limit:
            # Cloudflare's "a timeout occurred": the edge gives up on large batches.
            raise ApiProblem(524, "a timeout occurred")
        tests = self.world.tests
        chosen = (
            tests if test_ids is None else [tid for tid in dict.fromkeys(test_ids) if tid in tests]
        )
        products = set(filters.get("filter_product_ids", ()))
        sections = set(filters.get("filter_section_ids", ()))
        bug_ids = [
            bug_id
            for tid in chosen
            if (not products or tests[tid].product_id in products)
            and (not sections or tests[tid].section_id in sections)
            for bug_id in self.world.bugs_by_test[tid]
        ]
        return _envelope("bugs", map(self.renderer.bug_bytes, bug_ids))

    def bug(self, bug_id: int) -> bytes:
        if bug_id not in self.world.bugs:
            raise ApiProblem(404, f"bug {bug_id} not found")
        return b'{"bug":' + self.renderer.bug_bytes(bug_id) + b"}"

    def reject_reasons(self) -> bytes:
        return dump({"reject_reasons": reject_reason_payloads()})


def _int(text: str, name: str, minimum: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ApiProblem(400, f"{name} must be an integer") from None
    if minimum is not None and value < minimum:
        raise ApiProblem(400, f"{name} must be at least {minimum}")
    return value


def _int_list(text: str, name: str) -> list[int]:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise ApiProblem(400, f"{name} must list at least one id")
    return [_int(part, name) for part in parts]
