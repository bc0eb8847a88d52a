"""Checks a FindRelatives or CompareKinship question and resolves its defaults (labels, top_n, year).

Every problem is collected, each with the path of the field at fault, so a caller
fixes a bad request in one round trip instead of one error at a time.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kinship.runtime.errors import FieldViolation, InvalidArgument

from .model import (
    CompareKinshipInput,
    ComparisonQuery,
    FindRelativesInput,
    KinshipQuery,
    MissingPerson,
    Photo,
    Relation,
    Relative,
    RelativeInput,
)


@dataclass(frozen=True)
class Limits:
    """Bounds on one question; `max_photos` bounds the embedder calls one request makes."""

    max_photos: int = 32
    default_top_n: int = 20
    max_top_n: int = 500
    earliest_birth_year: int = 1900
    max_label_chars: int = 64
    max_region_chars: int = 64
    max_age_at_photo: float = 130.0


# The indexer's rule for person ids, checked here so the error names the relative.
_PERSON_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

Bad = Callable[[str, str], None]


def _photo(photo: Photo | bytes) -> Photo:
    return photo if isinstance(photo, Photo) else Photo(image=photo)


def validate(
    request: FindRelativesInput, limits: Limits = Limits(), *, current_year: int | None = None
) -> KinshipQuery:
    """Returns the question with defaults resolved, or raises InvalidArgument listing every problem."""
    year = current_year if current_year is not None else datetime.date.today().year
    problems: list[FieldViolation] = []

    def bad(path: str, description: str) -> None:
        problems.append(FieldViolation(path, description))

    total_photos = _check_relatives(request.relatives, limits, year, bad)
    if total_photos > limits.max_photos:
        bad(
            "relatives",
            f"{total_photos} photos in total, more than the {limits.max_photos} one request may hold; "
            "send the clearest photos of each relative",
        )
    top_n = request.top_n or limits.default_top_n
    if not 1 <= top_n <= limits.max_top_n:
        bad("top_n", f"top_n must be 1 to {limits.max_top_n} (0 means {limits.default_top_n}), got {request.top_n}")
    _check_missing_person(request.missing_person, limits, year, bad)
    _check_prior(request.prior_probability, bad)
    _raise_if_any(problems)
    query = _query(request.relatives, request.missing_person, top_n, request.model_id, request.prior_probability, year)
    return dataclasses.replace(query, tenant=request.tenant)


def validate_comparison(
    request: CompareKinshipInput, limits: Limits = Limits(), *, current_year: int | None = None
) -> ComparisonQuery:
    """As `validate`, for CompareKinship: the relatives, and exactly one candidate (photos or a person id)."""
    year = current_year if current_year is not None else datetime.date.today().year
    problems: list[FieldViolation] = []

    def bad(path: str, description: str) -> None:
        problems.append(FieldViolation(path, description))

    total_photos = _check_relatives(request.relatives, limits, year, bad)
    person_id = request.candidate_person_id.strip()
    candidate_photos = [_photo(p) for p in request.candidate_photos]
    if person_id and candidate_photos:
        bad("candidate", "give the candidate as photos or as a gallery person id, not both")
    elif not person_id and not candidate_photos:
        bad(
            "candidate",
            "no candidate; set candidate_photos (photos of the candidate) or candidate_person_id (a gallery person)",
        )
    if person_id:
        if not _PERSON_ID.match(person_id):
            bad("candidate_person_id", "person id must be 1-128 letters, digits or '._:-', as enrolled in the gallery")
        elif person_id in {r.person_id for r in request.relatives}:
            bad("candidate_person_id", f"{person_id} is one of the relatives; a relative is never the candidate")
    for j, photo in enumerate(candidate_photos):
        _check_photo(photo, f"candidate_photos.photos[{j}]", "the candidate's", limits, year, bad)
    total_photos += len(candidate_photos)
    if total_photos > limits.max_photos:
        bad(
            "relatives",
            f"{total_photos} photos in total (relatives and candidate), more than the {limits.max_photos} one "
            "request may hold; send the clearest photos",
        )
    _check_missing_person(request.missing_person, limits, year, bad)
    _check_prior(request.prior_probability, bad)
    _raise_if_any(problems)
    query = _query(request.relatives, request.missing_person, 1, request.model_id, request.prior_probability, year)
    query = dataclasses.replace(query, tenant=request.tenant)
    return ComparisonQuery(
        query=query,
        candidate_photos=tuple(candidate_photos),
        candidate_sex=request.candidate_sex,
        candidate_person_id=person_id,
    )


def _raise_if_any(problems: list[FieldViolation]) -> None:
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more problem(s), see the field violations)" if len(problems) > 1 else ""
        raise InvalidArgument(f"{first.field}: {first.description}{more}", violations=problems)


def _query(
    given: Sequence[RelativeInput],
    missing: MissingPerson,
    top_n: int,
    model_id: str,
    prior_probability: float,
    year: int,
) -> KinshipQuery:
    labels = resolve_labels([(r.label, r.relation) for r in given])
    relatives = tuple(
        Relative(label=label, relation=r.relation, photos=tuple(_photo(p) for p in r.photos), person_id=r.person_id)
        for label, r in zip(labels, given, strict=True)
    )
    regions = tuple(dict.fromkeys(region.strip() for region in missing.regions))
    return KinshipQuery(
        relatives=relatives,
        missing_person=dataclasses.replace(missing, regions=regions),
        top_n=top_n,
        model_id=model_id.strip(),
        prior_probability=prior_probability,
        current_year=year,
    )


def _check_relatives(relatives: Sequence[RelativeInput], limits: Limits, year: int, bad: Bad) -> int:
    if not relatives:
        bad(
            "relatives",
            "at least one relative is needed; add the father, mother, a brother or sister, a grandparent, or an "
            "earlier photo (self)",
        )
    total_photos = 0
    for i, relative in enumerate(relatives):
        at = f"relatives[{i}]"
        if relative.relation is Relation.UNSPECIFIED:
            bad(
                f"{at}.relation",
                "relation is not set; use father, mother, brother, sister, sibling, grandfather, grandmother or self",
            )
        if len(relative.label.strip()) > limits.max_label_chars:
            bad(f"{at}.label", f"label is longer than {limits.max_label_chars} characters")
        if relative.person_id and not _PERSON_ID.match(relative.person_id):
            bad(f"{at}.person_id", "person id must be 1-128 letters, digits or '._:-', as enrolled in the gallery")
        if not relative.photos:
            bad(f"{at}.photos", "no photo; send at least one photo where the relative's face is visible")
        for j, photo in enumerate(relative.photos):
            _check_photo(_photo(photo), f"{at}.photos[{j}]", "the relative's", limits, year, bad)
        total_photos += len(relative.photos)
    return total_photos


def _check_photo(photo: Photo, at: str, whose: str, limits: Limits, year: int, bad: Bad) -> None:
    if not photo.image:
        bad(f"{at}.image", f"image is empty; send the JPEG or PNG bytes of {whose} photo")
    if photo.capture_year is not None and not limits.earliest_birth_year <= photo.capture_year <= year:
        bad(
            f"{at}.capture_year",
            f"capture year must be {limits.earliest_birth_year} to {year}, got {photo.capture_year}; "
            "leave it unset when unknown",
        )
    age = photo.age_at_photo
    if age is not None and not (math.isfinite(age) and 0.0 <= age <= limits.max_age_at_photo):
        bad(
            f"{at}.age_at_photo",
            f"age at the photo must be 0 to {limits.max_age_at_photo:g} years, got {age}; leave it unset when unknown",
        )


def _check_prior(prior: float, bad: Bad) -> None:
    if prior == 0.0:
        return
    if not (math.isfinite(prior) and 0.0 < prior < 1.0):
        bad(
            "prior_probability",
            f"prior probability must be above 0 and below 1 (0 uses the ranker's default), got {prior}",
        )


def _check_missing_person(missing: MissingPerson, limits: Limits, year: int, bad: Bad) -> None:
    at = "missing_person.birth_year"
    for name, value in (("min", missing.birth_year_min), ("max", missing.birth_year_max)):
        if value is not None and not limits.earliest_birth_year <= value <= year:
            bad(f"{at}.{name}", f"birth year must be {limits.earliest_birth_year} to {year}, got {value}")
    low, high = missing.birth_year_min, missing.birth_year_max
    if low is not None and high is not None and low > high:
        bad(at, f"min ({low}) is after max ({high}); for one known year set min = max")
    for k, region in enumerate(missing.regions):
        if not region.strip():
            bad(f"missing_person.regions[{k}]", "region is empty; leave regions empty to search everywhere")
        elif len(region) > limits.max_region_chars:
            bad(f"missing_person.regions[{k}]", f"region is longer than {limits.max_region_chars} characters")
    for name, value in (
        ("birth_year_log10_lr_per_year", missing.birth_year_log10_lr_per_year),
        ("region_log10_lr", missing.region_log10_lr),
    ):
        # A penalty, never a reward: being outside what is known cannot make a candidate likelier.
        if value is not None and not (math.isfinite(value) and -10.0 <= value <= 0.0):
            bad(f"missing_person.soft.{name}", f"must be a log10 likelihood ratio from -10 to 0, got {value}")


def resolve_labels(given: list[tuple[str, Relation]]) -> list[str]:
    """Labels default to the relation's name; repeats get "-2", "-3"... in request order."""
    taken: set[str] = set()
    out: list[str] = []
    for label, relation in given:
        base = label.strip() or relation.value
        candidate, n = base, 1
        while candidate in taken:
            n += 1
            candidate = f"{base}-{n}"
        taken.add(candidate)
        out.append(candidate)
    return out
