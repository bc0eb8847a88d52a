"""The synthetic family simulator: determinism, shapes, and the similarity statistics it promises.

The statistics are checked on the first photo of each person (single ordinary photos,
as the targets were measured on KinFaceW-I) with a fixed seed, so the figures are the
same on every run; the tolerances are several standard errors of the sample sizes used.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from kinship.simulation import (
    IDENTITY_TARGETS,
    KINSHIP_TARGETS,
    SimulatedFamily,
    SimulationParams,
    SpaceTargets,
    distractors,
    simulate_families,
)

SPACES = ("identity", "kinship")
TOLERANCE = 0.02  # about 5 standard errors of a mean over 3000 pairs (sd 0.19)


@pytest.fixture(scope="module")
def params() -> SimulationParams:
    return SimulationParams(seed=11, self_photo_probability=1.0)


@pytest.fixture(scope="module")
def families(params: SimulationParams) -> list[SimulatedFamily]:
    return simulate_families(1500, params)


def first(person, space: str) -> np.ndarray:
    return getattr(person, space)[0]


def similarity_stats(families: list[SimulatedFamily], space: str) -> dict[str, np.ndarray]:
    """Cosines of first photos: parent-child, non-kin (across families and father-mother), sibling-child."""
    parent_child, nonkin, sibling = [], [], []
    for i, family in enumerate(families):
        child = first(family.child, space)
        parent_child += [first(family.father, space) @ child, first(family.mother, space) @ child]
        other = families[i - 1]  # another family: unrelated
        nonkin += [
            first(family.father, space) @ first(other.child, space),
            first(family.father, space) @ first(family.mother, space),
        ]
        sibling += [first(s, space) @ child for s in family.siblings]
    return {"parent_child": np.array(parent_child), "nonkin": np.array(nonkin), "sibling": np.array(sibling)}


def assert_matches(stats: dict[str, np.ndarray], targets: SpaceTargets, tolerance: float = TOLERANCE) -> None:
    measured = {
        "parent_child_mean": stats["parent_child"].mean(),
        "parent_child_sd": stats["parent_child"].std(),
        "nonkin_mean": stats["nonkin"].mean(),
        "nonkin_sd": stats["nonkin"].std(),
        "sibling_mean": stats["sibling"].mean(),
    }
    for name, value in measured.items():
        assert abs(value - getattr(targets, name)) < tolerance, (
            f"{name}: measured {value:.3f}, target {getattr(targets, name)}"
        )


def all_arrays(families: list[SimulatedFamily]) -> list[np.ndarray]:
    return [
        getattr(p, a)
        for f in families
        for p in (f.child, *f.relatives)
        for a in ("identity", "kinship", "quality", "photo_years")
    ]


# --- Determinism, shapes, attributes --------------------------------------------------


def test_families_are_determined_by_seed_and_index():
    p = SimulationParams(seed=3)
    run = simulate_families(6, p)
    rerun = simulate_families(6, p)
    assert all(np.array_equal(a, b) for a, b in zip(all_arrays(run), all_arrays(rerun), strict=True))
    # Family i is the same whether generated alone or among others.
    tail = simulate_families(3, p, start_index=3)
    assert [f.family_id for f in tail] == [f.family_id for f in run[3:]]
    assert all(np.array_equal(a, b) for a, b in zip(all_arrays(tail), all_arrays(run[3:]), strict=True))
    other = simulate_families(6, dataclasses.replace(p, seed=4))
    assert not np.array_equal(other[0].child.identity, run[0].child.identity)


def test_shapes_dtypes_unit_norms_and_attributes():
    p = SimulationParams(seed=5, relative_photos=2, child_photos=3, self_photo_probability=1.0, max_siblings=3)
    families = simulate_families(30, p)
    for family in families:
        assert family.father.role == "father" and family.father.sex == "male"
        assert family.mother.role == "mother" and family.mother.sex == "female"
        assert family.child.role == "child" and family.child.identity.shape == (3, 128)
        assert family.childhood is not None and family.childhood.role == "self"
        assert family.childhood.person_id == family.child.person_id  # the same person, younger
        assert family.childhood.photo_years[0] < p.reference_year
        assert family.father.birth_year < family.child.birth_year and family.mother.birth_year < family.child.birth_year
        assert p.birth_years[0] <= family.child.birth_year <= p.birth_years[1]
        assert family.region in p.regions
        assert len(family.siblings) <= 3
        for sibling in family.siblings:
            assert sibling.role == ("brother" if sibling.sex == "male" else "sister")
        for person in family.relatives:
            assert person.identity.shape == (2, 128) and person.kinship.shape == (2, 64)
            assert person.quality.shape == (2,) and person.photo_years.shape == (2,)
        for person in (family.child, *family.relatives):
            for vectors in (person.identity, person.kinship):
                assert vectors.dtype == np.float32
                np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert {len(f.siblings) for f in families} == {0, 1, 2, 3}
    person_ids = [p.person_id for f in families for p in (f.father, f.mother, f.child, *f.siblings)]
    assert len(set(person_ids)) == len(person_ids)


def test_photos_of_one_person_are_near_duplicates():
    p = SimulationParams(seed=2, relative_photos=3)
    father = simulate_families(1, p)[0].father
    for space in SPACES:
        vectors = getattr(father, space)
        cosines = vectors @ vectors.T
        assert cosines[np.triu_indices(3, 1)].min() > 0.95


# --- Similarity statistics ------------------------------------------------------------


@pytest.mark.parametrize(("space", "targets"), [("identity", IDENTITY_TARGETS), ("kinship", KINSHIP_TARGETS)])
def test_kin_and_nonkin_similarities_match_the_measured_targets(families, space, targets):
    stats = similarity_stats(families, space)
    assert len(stats["parent_child"]) == 3000 and len(stats["sibling"]) > 1000
    assert_matches(stats, targets)


@pytest.mark.parametrize("space", SPACES)
def test_siblings_resemble_more_than_strangers_and_a_bit_more_than_parents(families, space):
    stats = similarity_stats(families, space)
    assert stats["sibling"].mean() > stats["nonkin"].mean() + 0.1
    assert stats["sibling"].mean() > stats["parent_child"].mean()


def test_other_targets_and_a_128_d_kinship_space_are_honoured():
    # Proves the figures come from the targets, not from constants that happen to match the defaults.
    targets = SpaceTargets(
        parent_child_mean=0.5, parent_child_sd=0.16, nonkin_mean=0.1, nonkin_sd=0.15, sibling_mean=0.55
    )
    p = SimulationParams(seed=8, kinship_dim=128, kinship_targets=targets)
    families = simulate_families(600, p)
    assert families[0].child.kinship.shape == (1, 128)
    assert_matches(similarity_stats(families, "kinship"), targets, tolerance=0.03)


def test_unreachable_targets_are_refused():
    # sd 0.18 needs about 30 effective dimensions: a 16-d space cannot give it.
    with pytest.raises(ValueError, match="effective dimensions"):
        simulate_families(1, SimulationParams(kinship_dim=16))
    with pytest.raises(ValueError, match="nonkin_mean"):
        simulate_families(1, SimulationParams(kinship_targets=dataclasses.replace(KINSHIP_TARGETS, nonkin_mean=0.4)))
    with pytest.raises(ValueError, match="blurry_fraction"):
        SimulationParams(blurry_fraction=1.5)


def test_childhood_photo_resembles_the_adult_less_as_the_age_gap_grows(families, params):
    gaps = np.array([f.child.photo_years[0] - f.childhood.photo_years[0] for f in families])
    similarity = np.array([first(f.childhood, "identity") @ first(f.child, "identity") for f in families])
    assert gaps.min() < 15 and gaps.max() > 45
    assert np.corrcoef(gaps, similarity)[0, 1] < -0.25
    # The mean similarity falls from one decade of age gap to the next (past 45 years
    # it is near its floor and the steps are smaller than the sampling error).
    by_decade = [similarity[(gaps >= low) & (gaps < low + 10)].mean() for low in (5, 15, 25, 35)]
    assert all(np.diff(by_decade) < 0), by_decade
    recent, old = similarity[gaps <= 15].mean(), similarity[gaps >= 40].mean()
    assert recent > old + 0.1
    # A recent childhood photo is stronger evidence than a parent; it never falls to a stranger's level.
    assert recent > IDENTITY_TARGETS.parent_child_mean + 0.1
    assert old > IDENTITY_TARGETS.nonkin_mean + 0.1


def test_blurry_photos_are_noisier_and_have_lower_quality():
    sharp_p = SimulationParams(seed=4, relative_photos=2, max_siblings=0, self_photo_probability=0.0)
    sharp = simulate_families(300, sharp_p)
    blurry = simulate_families(300, dataclasses.replace(sharp_p, blurry_fraction=1.0))
    sharp_quality = np.concatenate([f.father.quality for f in sharp])
    blurry_quality = np.concatenate([f.father.quality for f in blurry])
    assert np.all((blurry_quality > 0) & (blurry_quality < 0.6))
    assert np.all((sharp_quality > 0.95) & (sharp_quality <= 1.0))
    for space in SPACES:
        # Two photos of one person agree less when blurry ...
        agree = {
            name: np.mean([getattr(f.father, space)[0] @ getattr(f.father, space)[1] for f in fams])
            for name, fams in (("sharp", sharp), ("blurry", blurry))
        }
        assert agree["blurry"] < agree["sharp"] - 0.3
        # ... and a blurry photo carries less kin signal.
        kin = {
            name: np.mean([first(f.father, space) @ first(f.child, space) for f in fams])
            for name, fams in (("sharp", sharp), ("blurry", blurry))
        }
        assert kin["blurry"] < kin["sharp"] - 0.05
    # A fraction in between makes some photos blurry and leaves the others sharp.
    mixed = simulate_families(100, dataclasses.replace(sharp_p, blurry_fraction=0.5))
    quality = np.concatenate([f.father.quality for f in mixed])
    assert 0.3 < np.mean(quality < 0.6) < 0.7


# --- Distractors ----------------------------------------------------------------------


def test_distractor_chunks_add_up_to_n_with_unique_ids_and_valid_attributes(params):
    chunks = list(distractors(10_001, params, chunk_size=4096))
    assert [len(c) for c in chunks] == [4096, 4096, 1809]
    ids = np.concatenate([c.ids for c in chunks])
    assert len(ids) == 10_001 and len(set(ids.tolist())) == 10_001
    more = np.concatenate([c.ids for c in distractors(500, params, start_index=10_001)])
    assert not set(more.tolist()) & set(ids.tolist())
    for chunk in chunks:
        assert chunk.identity.shape == (len(chunk), 128) and chunk.kinship.shape == (len(chunk), 64)
        assert chunk.identity.dtype == np.float32 and chunk.kinship.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(chunk.identity, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(chunk.kinship, axis=1), 1.0, atol=1e-5)
        assert chunk.birth_year.min() >= params.birth_years[0] and chunk.birth_year.max() <= params.birth_years[1]
        assert set(chunk.sex.tolist()) == {"female", "male"} and set(chunk.region.tolist()) == set(params.regions)
        assert chunk.quality.shape == (len(chunk),)


def test_distractors_do_not_depend_on_chunk_size_or_start_and_follow_the_seed(params):
    def rows(**kwargs):
        chunks = list(distractors(kwargs.pop("n"), params=kwargs.pop("p", params), **kwargs))
        return np.concatenate([c.ids for c in chunks]), np.concatenate([c.kinship for c in chunks])

    ids, vectors = rows(n=5000, chunk_size=4096)
    ids_small, vectors_small = rows(n=5000, chunk_size=999)
    assert np.array_equal(ids, ids_small) and np.array_equal(vectors, vectors_small)
    ids_mid, vectors_mid = rows(n=100, start_index=4050, chunk_size=64)  # across a block boundary
    assert np.array_equal(ids_mid, ids[4050:4150]) and np.array_equal(vectors_mid, vectors[4050:4150])
    _, other = rows(n=100, p=dataclasses.replace(params, seed=params.seed + 1))
    assert not np.array_equal(other, vectors[:100])


def test_distractors_are_strangers_to_the_families_in_the_same_space(params, families):
    # Drawn with another seed but the same geometry: they must mix with the families in one gallery.
    chunk = next(distractors(len(families), dataclasses.replace(params, seed=99), chunk_size=len(families)))
    for space, targets in (("identity", IDENTITY_TARGETS), ("kinship", KINSHIP_TARGETS)):
        children = np.stack([first(f.child, space) for f in families])
        cosines = np.einsum("ij,ij->i", children, getattr(chunk, space))
        assert abs(cosines.mean() - targets.nonkin_mean) < TOLERANCE
        assert abs(cosines.std() - targets.nonkin_sd) < TOLERANCE
    # Another geometry is another space: its strangers would not sit at the identity model's 0.31.
    foreign = next(distractors(len(families), dataclasses.replace(params, geometry_seed=1), chunk_size=len(families)))
    children = np.stack([first(f.child, "identity") for f in families])
    assert np.einsum("ij,ij->i", children, foreign.identity).mean() < 0.15
