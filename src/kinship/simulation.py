"""Synthetic families and distractors in the identity and kinship embedding spaces.

What it is for: tests of fusion (does a second parent raise the true child's rank,
does a duplicate photo add nothing, does a blurry photo count less) and galleries of
100k-1M people for load and candidate-recall measurements, without any face images.
It draws embeddings directly; pure numpy, no models, no services.

    params = SimulationParams(seed=1, relative_photos=2)
    for family in simulate_families(100, params):
        family.father.kinship          # (2, 64) float32 rows: two photos of the father
        family.child.identity          # the missing child's adult gallery record(s)
    for chunk in distractors(1_000_000, params, chunk_size=1000):
        chunk.ids, chunk.identity, chunk.kinship, chunk.birth_year, chunk.sex, chunk.region

The generative model
--------------------
Every person has a *clean* vector in each space; each photo of that person is the
clean vector plus a little noise, L2-normalised (what a face model returns).

    clean = mean_length * mu  +  w            w ~ N(0, Sigma), w orthogonal to mu, trace(Sigma) = 1
    photo = normalise(clean + noise * |clean| * n)        n ~ N(0, I / d)

- `mu` is a population mean direction. Identity models put every face in one cone,
  which is why two strangers' faces sit near cosine 0.31 rather than 0; the kinship
  space has no such offset (strangers at 0), so its `mean_length` comes out 0.
- `Sigma` is anisotropic (a geometric eigen-spectrum in a random basis). Real
  embeddings use only part of their dimensions: the spread of cosines between
  strangers (sd 0.15-0.18) is far wider than random unit vectors in 64-128
  dimensions would give (1/sqrt(d) = 0.09-0.125). Cosine spread is about
  1/sqrt(d_eff) with d_eff = 1 / sum(eigenvalue^2), so the spectrum is solved for
  the d_eff that gives the target spread.
- Parents, distractors and every other founder draw `w` independently. A child
  mixes both parents, a component shared by all children of the family, and its own
  part, with weights whose squares sum to 1:

      w_child = a_f * w_father + a_m * w_mother + b * h_family + sqrt(1 - a_f^2 - a_m^2 - b^2) * w_own

  so every child has the same distribution as a founder (a stranger looks like any
  other stranger), cov(parent, child) = a * Sigma and cov(child, sibling) =
  (a_f a_f' + a_m a_m' + b^2) * Sigma. Without `h_family` siblings would resemble
  each other less than parent and child (2a^2 < a for a < 1/2); real siblings also
  share an environment, an age cohort and often the photo conditions.
  The weights vary by child (a = a0 + a_sd * r, r ~ N(0, 1)): some children take
  after a parent more than others, which is why kin cosines are spread a little
  wider than strangers'. A child's r is shared by the two spaces, so a child who
  resembles its father in one space tends to in the other.
- An earlier photo of the missing person (relation SELF, a childhood photo) keeps
  a share `kept` of the adult's `w` and replaces the rest with a fresh draw; `kept`
  halves towards a floor as the age gap between the two photos grows.
- Noise is relative to the clean vector's length, so `noise` means the same in both
  spaces: two photos of one person with noise s1, s2 have cosine about
  sqrt(q1 * q2) with quality q = 1 / (1 + s^2). Ordinary photos are near-duplicates
  (q about 0.98); a blurry photo has more noise and a lower quality.

Calibration: the weights (mean_length, d_eff, a0, a_sd, b) are solved from the
target similarity statistics of *single ordinary photos* (what was measured on
KinFaceW-I: one photo per person, cosine of L2-normalised vectors), first with
closed-form approximations, then corrected by a few fixed-point steps on a fixed
Monte Carlo sample (the approximations ignore norm fluctuations, off by about 0.01).
The result depends only on the targets, the dimension and the photo noise, not on
the seed, and is cached.

Not modelled: sex or ethnicity directions in the embeddings (same-sex strangers are
not more alike here), photo age of the relatives, pose or illumination structure.
The aging parameters of SELF photos are assumptions, not measurements.

Determinism: family i depends only on (seed, i); distractor row i only on
(seed, i), whatever the chunk size. The spaces themselves (mean direction and axes)
come from `geometry_seed`, so populations drawn with different seeds but one
geometry live in the same space and can be mixed in one gallery.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass, fields

import numpy as np

FEMALE = "female"
MALE = "male"
_SEXES = (FEMALE, MALE)

# Roles of a family's members. Relatives use the ranker's relation names
# (kinship.ranker.domain.model.Relation values); "child" is the missing person
# as an adult (the gallery side) and "self" the same person photographed as a child.
FATHER, MOTHER, BROTHER, SISTER, CHILD, SELF = "father", "mother", "brother", "sister", "child", "self"

# Independent random streams per purpose, so that adding a draw to one never shifts another.
_FAMILY_STREAM, _DISTRACTOR_STREAM, _GEOMETRY_STREAM = 1, 2, 3
_CALIBRATION_SEED = 20261
_CALIBRATION_FAMILIES = 4000  # 16000 kin pairs: the fitted means are good to about 0.002, in 0.1-0.3 s
# Distractors are drawn in fixed blocks, each from its own stream, so that a row does
# not depend on the chunk size nor on where a call starts.
_DISTRACTOR_BLOCK = 4096


@dataclass(frozen=True)
class SpaceTargets:
    """Cosine similarity statistics of single ordinary photos that a space must reproduce.

    parent_child: a parent and their child; nonkin: unrelated people; sibling: two
    children of the same parents (not measured on KinFaceW-I; set a little above
    parent-child).
    """

    parent_child_mean: float
    parent_child_sd: float
    nonkin_mean: float
    nonkin_sd: float
    sibling_mean: float


#: Measured on KinFaceW-I with the default pack's identity model (SFace, 128-d).
IDENTITY_TARGETS = SpaceTargets(
    parent_child_mean=0.47, parent_child_sd=0.14, nonkin_mean=0.31, nonkin_sd=0.15, sibling_mean=0.51
)
#: Measured on KinFaceW-I with the trained kinship network.
KINSHIP_TARGETS = SpaceTargets(
    parent_child_mean=0.32, parent_child_sd=0.19, nonkin_mean=0.00, nonkin_sd=0.18, sibling_mean=0.36
)


@dataclass(frozen=True)
class SimulationParams:
    """Everything a simulation depends on; the defaults give KinFaceW-I-like similarities."""

    seed: int = 0
    #: Seed of the spaces (mean direction, axes). Keep it equal across populations that share a gallery.
    geometry_seed: int = 0
    identity_dim: int = 128
    kinship_dim: int = 64
    identity_targets: SpaceTargets = IDENTITY_TARGETS
    kinship_targets: SpaceTargets = KINSHIP_TARGETS
    #: Per-photo noise relative to the clean vector: 0.15 gives near-duplicates (quality 0.978).
    photo_noise: float = 0.15
    #: Noise of a blurry photo (quality 0.5).
    blurry_noise: float = 1.0
    #: Probability that any one photo (relatives, child, distractors) is blurry.
    blurry_fraction: float = 0.0
    #: Photos per relative (father, mother, each sibling, the childhood photo).
    relative_photos: int = 1
    #: Gallery records (adult photos) of the missing child.
    child_photos: int = 1
    #: Each family has 0..max_siblings siblings of the missing child, uniformly.
    max_siblings: int = 2
    #: Probability that a family has a childhood (SELF) photo of the missing child.
    self_photo_probability: float = 0.5
    #: Age of the missing child in the childhood photo, inclusive range.
    self_photo_ages: tuple[int, int] = (2, 12)
    #: Share of the adult's identity a childhood photo keeps at age gap 0 ...
    aging_kept_at_zero_gap: float = 0.9
    #: ... and at an infinite gap; the share above the floor halves every `aging_half_life_years`.
    aging_kept_floor: float = 0.3
    aging_half_life_years: float = 10.0
    #: Birth years of missing children and distractors, inclusive.
    birth_years: tuple[int, int] = (1960, 2005)
    #: The year adult photos (gallery records, relatives' photos) are taken.
    reference_year: int = 2025
    regions: tuple[str, ...] = ("north", "south", "east", "west")

    def __post_init__(self) -> None:
        problems = []
        if self.identity_dim < 3 or self.kinship_dim < 3:
            problems.append("identity_dim and kinship_dim must be >= 3")
        for name in ("photo_noise", "blurry_noise", "aging_half_life_years"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0")
        for name in ("blurry_fraction", "self_photo_probability"):
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name} must be in [0, 1]")
        if not 0 <= self.aging_kept_floor <= self.aging_kept_at_zero_gap <= 1:
            problems.append("need 0 <= aging_kept_floor <= aging_kept_at_zero_gap <= 1")
        if self.relative_photos < 1 or self.child_photos < 1 or self.max_siblings < 0:
            problems.append("relative_photos and child_photos must be >= 1, max_siblings >= 0")
        if self.birth_years[0] > self.birth_years[1] or self.self_photo_ages[0] > self.self_photo_ages[1]:
            problems.append("birth_years and self_photo_ages are (low, high) with low <= high")
        if self.self_photo_ages[0] < 0 or self.reference_year - self.birth_years[1] <= self.self_photo_ages[1]:
            problems.append("every childhood photo must be taken before reference_year, at an age >= 0")
        if not self.regions:
            problems.append("regions must not be empty")
        if problems:
            raise ValueError("invalid SimulationParams: " + "; ".join(problems))


@dataclass(frozen=True, eq=False)
class SimulatedPerson:
    """One person and their photos; row i of every array is photo i.

    identity: (photos, identity_dim) and kinship: (photos, kinship_dim), float32,
    L2-normalised rows (the two models' embeddings of the same photo); quality:
    (photos,) in (0, 1], 1 / (1 + noise^2); photo_years: (photos,) the capture year.
    """

    person_id: str
    role: str
    sex: str
    birth_year: int
    identity: np.ndarray
    kinship: np.ndarray
    quality: np.ndarray
    photo_years: np.ndarray


@dataclass(frozen=True, eq=False)
class SimulatedFamily:
    """A family with a missing child: the relatives are the query, `child` belongs in the gallery.

    `childhood` is the missing child photographed as a child (role "self", the same
    person_id as `child`), or None when the family has no such photo.
    """

    family_id: str
    region: str
    father: SimulatedPerson
    mother: SimulatedPerson
    siblings: tuple[SimulatedPerson, ...]
    child: SimulatedPerson
    childhood: SimulatedPerson | None

    @property
    def relatives(self) -> tuple[SimulatedPerson, ...]:
        """Everyone whose photos a family would bring: parents, siblings, the childhood photo."""
        extra = (self.childhood,) if self.childhood is not None else ()
        return (self.father, self.mother, *self.siblings, *extra)


@dataclass(frozen=True, eq=False)
class DistractorChunk:
    """Rows of unrelated adults, one photo each; row i of every array is one person."""

    ids: np.ndarray  # (n,) str, "distractor-00000042"
    identity: np.ndarray  # (n, identity_dim) float32, L2-normalised
    kinship: np.ndarray  # (n, kinship_dim) float32, L2-normalised
    quality: np.ndarray  # (n,) float32
    birth_year: np.ndarray  # (n,) int32
    sex: np.ndarray  # (n,) str, "female" | "male"
    region: np.ndarray  # (n,) str

    def __len__(self) -> int:
        return len(self.ids)

    def _slice(self, lo: int, hi: int) -> DistractorChunk:
        return DistractorChunk(**{f.name: getattr(self, f.name)[lo:hi] for f in fields(self)})

    @staticmethod
    def _concat(chunks: list[DistractorChunk]) -> DistractorChunk:
        if len(chunks) == 1:
            return chunks[0]
        return DistractorChunk(
            **{f.name: np.concatenate([getattr(c, f.name) for c in chunks]) for f in fields(DistractorChunk)}
        )


# --- Public entry points --------------------------------------------------------------


def simulate_families(n: int, params: SimulationParams | None = None, start_index: int = 0) -> list[SimulatedFamily]:
    """Families start_index .. start_index + n - 1; family i is the same whatever n and start_index."""
    params = params or SimulationParams()
    if n < 0 or start_index < 0:
        raise ValueError("n and start_index must be >= 0")
    identity, kinship = _spaces(params)
    return [_family(params, identity, kinship, i) for i in range(start_index, start_index + n)]


def distractors(
    n: int, params: SimulationParams | None = None, start_index: int = 0, chunk_size: int = 8192
) -> Iterator[DistractorChunk]:
    """Unrelated adults start_index .. start_index + n - 1, yielded in chunks of at most chunk_size rows.

    Memory stays at about two blocks and one chunk whatever n is. Row i (and its id,
    "distractor-%08d" % i) is the same whatever the chunk size, so disjoint
    [start_index, start_index + n) ranges give disjoint people.
    """
    params = params or SimulationParams()
    if n < 0 or start_index < 0 or chunk_size < 1:
        raise ValueError("n and start_index must be >= 0, chunk_size >= 1")
    identity, kinship = _spaces(params)
    cached: tuple[int, DistractorChunk] | None = None  # chunk boundaries rarely match blocks
    end = start_index + n
    for lo in range(start_index, end, chunk_size):
        hi = min(lo + chunk_size, end)
        pieces = []
        for block in range(lo // _DISTRACTOR_BLOCK, (hi - 1) // _DISTRACTOR_BLOCK + 1):
            if cached is None or cached[0] != block:
                cached = (block, _distractor_block(params, identity, kinship, block))
            first = block * _DISTRACTOR_BLOCK
            pieces.append(cached[1]._slice(max(lo, first) - first, min(hi, first + _DISTRACTOR_BLOCK) - first))
        yield DistractorChunk._concat(pieces)


# --- The mixing model of one space ----------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Mixing:
    """The calibrated weights of one space; functions of standard normal draws, so calibration and generation share them."""

    dim: int
    mean_length: float  # length of the population mean component
    spectrum_sqrt: np.ndarray  # (dim - 1,) float32 standard deviations of w per axis, sum of squares 1
    parent_weight: float  # a0: mean weight of each parent in a child
    parent_weight_sd: float  # a_sd: how much it varies between children
    family_weight: float  # b: weight of the component all children of a family share

    def founder(self, z: np.ndarray) -> np.ndarray:
        """w of people unrelated to anyone drawn before (z: standard normals, (..., dim - 1))."""
        return z * self.spectrum_sqrt

    def child(
        self, w_father: np.ndarray, w_mother: np.ndarray, h_family: np.ndarray, w_own: np.ndarray, r: np.ndarray
    ) -> np.ndarray:
        """w of children; r (..., 2): how far each child takes after father, mother (standard normal)."""
        b2 = self.family_weight**2
        # The cap keeps the own weight real: a_f^2 + a_m^2 + b^2 <= 1.
        a = np.clip(self.parent_weight + self.parent_weight_sd * r, 0.0, math.sqrt((1.0 - b2) / 2.0))
        a_f, a_m = a[..., 0:1], a[..., 1:2]
        own = np.sqrt(np.maximum(0.0, 1.0 - a_f**2 - a_m**2 - b2))
        return a_f * w_father + a_m * w_mother + self.family_weight * h_family + own * w_own

    def photos(self, w: np.ndarray, noise: np.ndarray, z: np.ndarray, basis: np.ndarray | None) -> np.ndarray:
        """L2-normalised float32 photos of clean vectors [mean_length, w] (rows), noise (rows,), z (rows, dim).

        basis rotates the canonical coordinates (axis 0 = mean direction) into the
        space; calibration skips it because a rotation changes no cosine.
        """
        clean = np.concatenate([np.full((len(w), 1), self.mean_length, dtype=w.dtype), w], axis=1)
        clean_length = math.sqrt(1.0 + self.mean_length**2)  # E|w|^2 = 1
        x = clean + noise[:, None] * np.float32(clean_length / math.sqrt(self.dim)) * z
        if basis is not None:
            x = x @ basis.T
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@dataclass(frozen=True, eq=False)
class _Space:
    mixing: _Mixing
    basis: np.ndarray  # (dim, dim) float32, orthonormal columns; column 0 is the population mean direction

    # float32 draws: half the time of float64 for 1M distractors, and the output is float32 anyway.
    def founders(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.mixing.founder(rng.standard_normal((n, self.mixing.dim - 1), dtype=np.float32))

    def photos(self, rng: np.random.Generator, w: np.ndarray, noise: np.ndarray) -> np.ndarray:
        z = rng.standard_normal((len(w), self.mixing.dim), dtype=np.float32)
        return self.mixing.photos(w, noise.astype(np.float32), z, self.basis)


@functools.lru_cache(maxsize=16)
def _spaces(params: SimulationParams) -> tuple[_Space, _Space]:
    return (
        _space("identity", params.identity_dim, params.identity_targets, params.photo_noise, params.geometry_seed),
        _space("kinship", params.kinship_dim, params.kinship_targets, params.photo_noise, params.geometry_seed),
    )


def _space(name: str, dim: int, targets: SpaceTargets, photo_noise: float, geometry_seed: int) -> _Space:
    mixing = _calibrate(name, dim, targets, photo_noise)
    rng = np.random.default_rng([geometry_seed, _GEOMETRY_STREAM, dim])
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return _Space(mixing, (q * np.sign(np.diag(r))).astype(np.float32))  # sign fix: a uniformly random rotation


# --- Calibration: from target statistics to mixing weights ----------------------------


@functools.lru_cache(maxsize=16)
def _calibrate(name: str, dim: int, targets: SpaceTargets, photo_noise: float) -> _Mixing:
    """Solve the closed form on adjusted targets until a fixed Monte Carlo sample meets the real ones."""
    q = 1.0 + photo_noise**2
    if not 0 <= targets.nonkin_mean < min(targets.parent_child_mean, 1 / q):
        raise ValueError(
            f"{name} space: need 0 <= nonkin_mean < parent_child_mean and nonkin_mean < {1 / q:.3f}, got {targets}"
        )
    mixing = _closed_form(name, dim, targets, photo_noise)  # refuses impossible targets before any sampling
    rng = np.random.default_rng(_CALIBRATION_SEED)
    n = _CALIBRATION_FAMILIES
    # One sample reused in every step (common random numbers): the statistics move
    # smoothly with the weights, so the fixed-point steps converge in 2-3 rounds.
    draws = {
        "founders": rng.standard_normal((5, n, dim - 1)),  # father, mother, family, own of two children
        "resemblance": rng.standard_normal((2, n, 2)),
        "photo": rng.standard_normal((4, n, dim)),
    }
    target = np.array(_as_tuple(targets))
    adjusted = target.copy()
    for step in range(12):
        if step:
            mixing = _closed_form(name, dim, SpaceTargets(*adjusted), photo_noise)
        error = target - np.array(_as_tuple(_measure(mixing, draws, photo_noise)))
        if np.max(np.abs(error)) < 1e-3:
            return mixing
        adjusted += error
    if np.max(np.abs(error)) < 0.01:
        return mixing
    raise ValueError(
        f"{name} space: the model cannot reach {targets} at dim {dim} with photo_noise {photo_noise} "
        f"(residual {dict(zip(_fields(SpaceTargets), np.round(error, 3), strict=True))})"
    )


def _closed_form(name: str, dim: int, t: SpaceTargets, photo_noise: float) -> _Mixing:
    """Weights from targets, treating norms as constant (exact in the limit of many dimensions).

    With S = 1 + mean_length^2 (expected |clean|^2), q = 1 + noise^2 and D = S q,
    the cosine of two ordinary photos is about (mean_length^2 + w1.w2) / D, so:
    nonkin mean = mean_length^2 / D, nonkin var = (sum eigenvalue^2 + noise terms) / D^2,
    parent-child mean = (mean_length^2 + a0) / D, sibling mean = (mean_length^2 + 2 a0^2 + b^2) / D.
    """
    q = 1.0 + photo_noise**2
    # Adjusted targets may step a little outside what the model can express (a negative
    # nonkin mean, for one); clamp, and let the residual check in `_calibrate` judge.
    nonkin_mean = min(max(t.nonkin_mean, 0.0), 0.99 / q)
    m2 = nonkin_mean * q / (1.0 - nonkin_mean * q)
    s = 1.0 + m2
    d = s * q
    noise_var = s**2 * (2 * photo_noise**2 + photo_noise**4) / dim  # clean.noise and noise.noise terms
    sum_eig2 = t.nonkin_sd**2 * d**2 - noise_var
    spectrum = _spectrum(name, dim - 1, 1.0 / sum_eig2 if sum_eig2 > 0 else math.inf)
    a0 = min(max(t.parent_child_mean * d - m2, 0.0), 0.7)  # 2 a0^2 <= 1
    # Given a0, a pair's cosine varies by about (1 - a0^2)^2 / d_eff (like unit vectors at
    # a fixed angle); the rest of the target spread comes from varying a between children.
    conditional_var = ((1 - a0**2) ** 2 * float(np.sum(spectrum**2)) + noise_var) / d**2
    a_sd = math.sqrt(max(0.0, t.parent_child_sd**2 - conditional_var)) * d
    b2 = min(max(0.0, t.sibling_mean * d - m2 - 2 * a0**2), 1.0 - 2 * a0**2)
    return _Mixing(dim, math.sqrt(m2), np.sqrt(spectrum).astype(np.float32), a0, a_sd, math.sqrt(b2))


def _spectrum(name: str, n: int, d_eff: float) -> np.ndarray:
    """n eigenvalues r^i (normalised to sum 1) with 1 / sum(eigenvalue^2) = d_eff, r by bisection."""
    if not 1 < d_eff <= n:
        raise ValueError(
            f"{name} space: the nonkin_sd asks for {d_eff:.1f} effective dimensions; a space of "
            f"{n + 1} dimensions has between 1 and {n} (random unit vectors already vary by 1/sqrt(dim))"
        )
    low, high = 0.0, 1.0
    for _ in range(60):
        ratio = (low + high) / 2
        eig = ratio ** np.arange(n)
        eig /= eig.sum()
        low, high = (ratio, high) if 1.0 / np.sum(eig**2) < d_eff else (low, ratio)
    return eig


def _measure(mixing: _Mixing, draws: dict[str, np.ndarray], photo_noise: float) -> SpaceTargets:
    """The statistics the targets speak of, on single ordinary photos of the calibration sample."""
    father, mother, family, own1, own2 = mixing.founder(draws["founders"])
    child1 = mixing.child(father, mother, family, own1, draws["resemblance"][0])
    child2 = mixing.child(father, mother, family, own2, draws["resemblance"][1])
    noise = np.full(len(father), photo_noise)
    pf, pm, p1, p2 = (
        mixing.photos(w, noise, z, None) for w, z in zip((father, mother, child1, child2), draws["photo"], strict=True)
    )

    def cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.einsum("ij,ij->i", a, b, dtype=np.float64)

    kin = np.concatenate([cos(pf, p1), cos(pm, p1), cos(pf, p2), cos(pm, p2)])
    # Father and mother are unrelated; so are members of different families.
    nonkin = np.concatenate([cos(pf, pm), cos(pf, np.roll(p1, 1, axis=0)), cos(pm, np.roll(p2, 1, axis=0))])
    return SpaceTargets(
        float(kin.mean()), float(kin.std()), float(nonkin.mean()), float(nonkin.std()), float(cos(p1, p2).mean())
    )


def _fields(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def _as_tuple(t: SpaceTargets) -> tuple[float, ...]:
    return tuple(getattr(t, name) for name in _fields(SpaceTargets))


# --- Families and distractors ---------------------------------------------------------


def aging_kept(params: SimulationParams, age_gap_years: float) -> float:
    """Share of the adult's identity that a photo taken `age_gap_years` earlier keeps."""
    above_floor = params.aging_kept_at_zero_gap - params.aging_kept_floor
    return params.aging_kept_floor + above_floor * 2.0 ** (-max(0.0, age_gap_years) / params.aging_half_life_years)


@dataclass
class _Member:
    person_id: str
    role: str
    sex: str
    birth_year: int
    w: dict[str, np.ndarray]  # "identity" / "kinship" -> clean w
    photos: int
    photo_year: int


def _family(params: SimulationParams, identity: _Space, kinship: _Space, index: int) -> SimulatedFamily:
    rng = np.random.default_rng([params.seed, _FAMILY_STREAM, index])
    family_id = f"family-{index:06d}"
    region = params.regions[rng.integers(len(params.regions))]
    child_born = int(rng.integers(params.birth_years[0], params.birth_years[1] + 1))
    child_sex = _SEXES[rng.integers(2)]
    n_siblings = int(rng.integers(0, params.max_siblings + 1))
    sibling_sexes = [_SEXES[s] for s in rng.integers(2, size=n_siblings)]
    sibling_born = child_born + rng.integers(1, 11, size=n_siblings) * rng.choice((-1, 1), size=n_siblings)
    father_born = child_born - int(rng.integers(20, 41))
    mother_born = child_born - int(rng.integers(18, 41))
    has_childhood = bool(rng.random() < params.self_photo_probability)
    childhood_age = int(rng.integers(params.self_photo_ages[0], params.self_photo_ages[1] + 1))
    kept = aging_kept(params, (params.reference_year - child_born) - childhood_age)
    # Row 0 the missing child, then the siblings; shared by both spaces (see module docstring).
    resemblance = rng.standard_normal((1 + n_siblings, 2))

    w: dict[str, dict[str, np.ndarray]] = {}
    for name, space in (("identity", identity), ("kinship", kinship)):
        father, mother, family, young = space.founders(rng, 4)
        children = space.mixing.child(father, mother, family, space.founders(rng, 1 + n_siblings), resemblance)
        w[name] = {
            FATHER: father,
            MOTHER: mother,
            CHILD: children[0],
            SELF: kept * children[0] + math.sqrt(1.0 - kept**2) * young,
            **{f"sibling-{k + 1}": children[1 + k] for k in range(n_siblings)},
        }

    def member(key: str, role: str, sex: str, born: int, photos: int, year: int, person_id: str = "") -> _Member:
        clean = {name: w[name][key] for name in w}
        return _Member(person_id or f"{family_id}-{key}", role, sex, int(born), clean, photos, year)

    now, k = params.reference_year, params.relative_photos
    members = [
        member(FATHER, FATHER, MALE, father_born, k, now),
        member(MOTHER, MOTHER, FEMALE, mother_born, k, now),
        member(CHILD, CHILD, child_sex, child_born, params.child_photos, now),
    ]
    for j, (sex, born) in enumerate(zip(sibling_sexes, sibling_born, strict=True)):
        members.append(member(f"sibling-{j + 1}", BROTHER if sex == MALE else SISTER, sex, born, k, now))
    if has_childhood:
        members.append(member(SELF, SELF, child_sex, child_born, k, child_born + childhood_age, f"{family_id}-{CHILD}"))

    people = _photograph(params, rng, identity, kinship, members)
    return SimulatedFamily(
        family_id=family_id,
        region=str(region),
        father=people[0],
        mother=people[1],
        child=people[2],
        siblings=tuple(people[3 : 3 + n_siblings]),
        childhood=people[3 + n_siblings] if has_childhood else None,
    )


def _photograph(
    params: SimulationParams, rng: np.random.Generator, identity: _Space, kinship: _Space, members: list[_Member]
) -> list[SimulatedPerson]:
    """All photos of a family in one call per space (the same photo, so the same noise level, in both)."""
    counts = [m.photos for m in members]
    noise = _photo_noise(params, rng, sum(counts))
    id_photos = identity.photos(rng, np.repeat(np.stack([m.w["identity"] for m in members]), counts, axis=0), noise)
    kin_photos = kinship.photos(rng, np.repeat(np.stack([m.w["kinship"] for m in members]), counts, axis=0), noise)
    quality = (1.0 / (1.0 + noise**2)).astype(np.float32)
    bounds = np.cumsum(counts)[:-1]
    return [
        SimulatedPerson(
            m.person_id, m.role, m.sex, m.birth_year, i, kv, qv, np.full(m.photos, m.photo_year, dtype=np.int32)
        )
        for m, i, kv, qv in zip(
            members,
            np.split(id_photos, bounds),
            np.split(kin_photos, bounds),
            np.split(quality, bounds),
            strict=True,
        )
    ]


def _photo_noise(params: SimulationParams, rng: np.random.Generator, n: int) -> np.ndarray:
    blurry = rng.random(n) < params.blurry_fraction
    return np.where(blurry, params.blurry_noise, params.photo_noise)


def _distractor_block(params: SimulationParams, identity: _Space, kinship: _Space, block: int) -> DistractorChunk:
    rng = np.random.default_rng([params.seed, _DISTRACTOR_STREAM, block])
    n, first = _DISTRACTOR_BLOCK, block * _DISTRACTOR_BLOCK
    noise = _photo_noise(params, rng, n)
    return DistractorChunk(
        ids=np.array([f"distractor-{i:08d}" for i in range(first, first + n)]),
        identity=identity.photos(rng, identity.founders(rng, n), noise),
        kinship=kinship.photos(rng, kinship.founders(rng, n), noise),
        quality=(1.0 / (1.0 + noise**2)).astype(np.float32),
        birth_year=rng.integers(params.birth_years[0], params.birth_years[1] + 1, size=n).astype(np.int32),
        sex=np.array(_SEXES)[rng.integers(2, size=n)],
        region=np.array(params.regions)[rng.integers(len(params.regions), size=n)],
    )
