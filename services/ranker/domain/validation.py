"""Checks a FindRelatives question and resolves its defaults (labels, top_n).

Every problem is collected, each with the path of the field at fault, so a caller
fixes a bad request in one round trip instead of one error at a time.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

from kinship.runtime.errors import FieldViolation, InvalidArgument

from .model import FindRelativesInput, KinshipQuery, MissingPerson, Relation, Relative


@dataclass(frozen=True)
class Limits:
    """Bounds on one question; `max_photos` bounds the embedder calls one request makes."""

    max_photos: int = 32
    default_top_n: int = 20
    max_top_n: int = 500
    earliest_birth_year: int = 1900
    max_label_chars: int = 64
    max_region_chars: int = 64


# The indexer's rule for person ids, checked here so the error names the relative.
_PERSON_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def validate(
    request: FindRelativesInput, limits: Limits = Limits(), *, current_year: int | None = None
) -> KinshipQuery:
    """Returns the question with defaults resolved, or raises InvalidArgument listing every problem."""
    year = current_year if current_year is not None else datetime.date.today().year
    problems: list[FieldViolation] = []

    def bad(path: str, description: str) -> None:
        problems.append(FieldViolation(path, description))

    if not request.relatives:
        bad(
            "relatives", "at least one relative is needed; add the father, mother, a sibling or an earlier photo (self)"
        )

    total_photos = 0
    for i, relative in enumerate(request.relatives):
        at = f"relatives[{i}]"
        if relative.relation is Relation.UNSPECIFIED:
            bad(f"{at}.relation", "relation is not set; use father, mother, sibling or self")
        if len(relative.label.strip()) > limits.max_label_chars:
            bad(f"{at}.label", f"label is longer than {limits.max_label_chars} characters")
        if relative.person_id and not _PERSON_ID.match(relative.person_id):
            bad(f"{at}.person_id", "person id must be 1-128 letters, digits or '._:-', as enrolled in the gallery")
        if not relative.photos:
            bad(f"{at}.photos", "no photo; send at least one photo where the relative's face is visible")
        for j, image in enumerate(relative.photos):
            if not image:
                bad(f"{at}.photos[{j}].image", "image is empty; send the JPEG or PNG bytes of the photo")
        total_photos += len(relative.photos)

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

    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more problem(s), see the field violations)" if len(problems) > 1 else ""
        raise InvalidArgument(f"{first.field}: {first.description}{more}", violations=problems)

    labels = resolve_labels([(r.label, r.relation) for r in request.relatives])
    relatives = tuple(
        Relative(label=label, relation=r.relation, photos=tuple(r.photos), person_id=r.person_id)
        for label, r in zip(labels, request.relatives, strict=True)
    )
    missing = request.missing_person
    regions = tuple(dict.fromkeys(region.strip() for region in missing.regions))
    return KinshipQuery(
        relatives=relatives,
        missing_person=MissingPerson(missing.sex, missing.birth_year_min, missing.birth_year_max, regions),
        top_n=top_n,
        model_id=request.model_id.strip(),
    )


def _check_missing_person(missing: MissingPerson, limits: Limits, year: int, bad) -> None:
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
