"""How a failed command tells the person at the terminal (or a program) what went wrong.

The services name the field of the request at fault (a google.rpc BadRequest field
violation such as `missing_person.birth_year.min`); a person typed a flag (`--born-from`).
`flag_for` maps each field path back to the flag that set it, `report` prints every
violation (text on stderr, or with `--json` one JSON object on stdout:
`{"error": {"code", "message", "exit_code", "violations": [{"field", "flag", "description"}]}}`)
and returns the exit code of the table below (README, `kinship --help`).
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
import textwrap

import grpc

from kinship.client import errors as client_errors

OK = 0
REFUSED = 1
USAGE = 2
UNREACHABLE = 3
PARTLY_DONE = 4
SERVICE_FAILED = 5
INTERRUPTED = 130

#: (exit code, meaning), as the README and `kinship --help` show them.
EXIT_CODES = (
    (OK, "done"),
    (
        REFUSED,
        "refused or not done: a service refused the request (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, "
        "PERMISSION_DENIED, UNAUTHENTICATED, a size limit), a file could not be read, files were refused on "
        "enrolment, a person has no record, a service is not SERVING (status)",
    ),
    (
        USAGE,
        "usage: a flag or argument is wrong or conflicts with another (argparse), an invalid --relative, "
        "a confirmation needed (--yes)",
    ),
    (
        UNREACHABLE,
        "unreachable or busy: a service could not be reached or did not answer in time (UNAVAILABLE, "
        "DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED with a retry hint); try again later",
    ),
    (PARTLY_DONE, "partly done: the main result is out, an extra is not (--pdf without Chromium: the HTML is kept)"),
    (SERVICE_FAILED, "a service failed (INTERNAL, UNKNOWN, ...): quote the request id when reporting it"),
    (INTERRUPTED, "interrupted (Ctrl-C); `kinship enroll` goes on where it stopped when run again"),
)


def exit_code_epilog() -> str:
    """The exit-code table for `kinship --help` (a RawDescriptionHelpFormatter keeps its lines)."""
    lines = ["exit codes:"]
    for code, meaning in EXIT_CODES:
        lines += textwrap.wrap(meaning, width=94, initial_indent=f"  {code:<4} ", subsequent_indent=" " * 7)
    return "\n".join(lines)


class CommandError(Exception):
    """A problem to report to the person at the terminal: the command could not do what was asked (exit 1)."""

    exit_code = REFUSED
    code = "FAILED"


class UsageError(CommandError):
    """The command was asked wrongly: a flag's value, or flags that go together or not (exit 2)."""

    exit_code = USAGE
    code = "USAGE"


class PartlyDone(CommandError):
    """The main result was written; an extra (the PDF) was not (exit 4)."""

    exit_code = PARTLY_DONE
    code = "PARTLY_DONE"


_UNREACHABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
_FAILED = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS, grpc.StatusCode.UNIMPLEMENTED}


def exit_code_of(error: client_errors.KinshipClientError) -> int:
    if error.status in _UNREACHABLE:
        return UNREACHABLE
    if error.status == grpc.StatusCode.RESOURCE_EXHAUSTED and error.retry_after is not None:
        return UNREACHABLE  # an admission refusal: busy now, come back later
    if error.status in _FAILED:
        return SERVICE_FAILED
    return REFUSED


# field paths -> flags ------------------------------------------------------------

_RELATIVE = re.compile(r"^relatives\[(\d+)\](?:\.(.*))?$")
_PHOTO = re.compile(r"^photos\[(\d+)\](?:\.(.*))?$")
_CANDIDATE_PHOTO = re.compile(r"^candidate_photos\.photos\[(\d+)\](?:\.(.*))?$")
_REGION = re.compile(r"^missing_person\.regions\[(\d+)\]$")

#: Fields one flag sets whatever the command (the command's own flags below take precedence).
_FIELD_FLAGS = {
    "top_n": "--top-n",
    "prior_probability": "--prior",
    "model_id": "--model-id",
    "tenant": "--tenant",
    "missing_person.sex": "--sex",
    "missing_person.regions": "--region",
    "missing_person.soft.birth_year_log10_lr_per_year": "--birth-year-penalty",
    "missing_person.soft.region_log10_lr": "--region-penalty",
    "missing_person.soft": "--soft-birth-year/--soft-region",
    "candidate": "--candidate/--candidate-person",
    "candidate_person_id": "--candidate-person",
    "candidate_photos": "--candidate",
    "candidate_sex": "--candidate-sex",
    "candidate_photos.sex": "--candidate-sex",
    "relatives": "--relative",
    "image": "IMAGE",
    "max_faces": "--max-faces",
    "pre_aligned": "--aligned",
    "person_ids": "--person",
}


def _photo_paths(text: str) -> list[str]:
    return [p.strip() for p in text.partition("=")[2].split(",") if p.strip()]


def flag_for(field: str, args: argparse.Namespace | None) -> str:
    """The flag (as the person typed it, where the CLI knows) that set the request field `field`; "" if none."""
    args = args if args is not None else argparse.Namespace()
    relatives = getattr(args, "relative", None) or []
    match = _RELATIVE.match(field)
    if match:
        index, rest = int(match.group(1)), match.group(2) or ""
        typed = relatives[index] if index < len(relatives) else ""
        flag = f"--relative {typed}" if typed else f"--relative (number {index + 1})"
        photo = _PHOTO.match(rest)
        if photo:
            j, what = int(photo.group(1)), photo.group(2) or ""
            paths = _photo_paths(typed)
            where = f"photo {paths[j]}" if j < len(paths) else f"photo {j + 1}"
            if what in ("capture_year", "age_at_photo"):
                return f"{flag} (@WHEN of {where})"
            return f"{flag} ({where})"
        if rest == "label":
            return f"{flag} (:LABEL)"
        if rest == "relation":
            return f"{flag} (RELATION)"
        return flag
    match = _CANDIDATE_PHOTO.match(field)
    if match:
        paths = [p.strip() for p in (getattr(args, "candidate", None) or "").split(",") if p.strip()]
        j = int(match.group(1))
        return f"--candidate (photo {paths[j] if j < len(paths) else j + 1})"
    match = _REGION.match(field)
    if match:
        regions = getattr(args, "region", None) or []
        k = int(match.group(1))
        return f"--region {regions[k]!r}" if k < len(regions) else "--region"
    if field.startswith("missing_person.birth_year"):
        one_year = getattr(args, "birth_year", None) is not None
        if one_year:
            return "--birth-year"
        return {
            "missing_person.birth_year.min": "--born-from",
            "missing_person.birth_year.max": "--born-to",
        }.get(field, "--born-from/--born-to")
    if field in _FIELD_FLAGS:
        return _FIELD_FLAGS[field]
    # The longest known prefix: `relatives` for `relatives.total`, `missing_person.soft` for its parts.
    for known in sorted(_FIELD_FLAGS, key=len, reverse=True):
        if field.startswith(known + ".") or field.startswith(known + "["):
            return _FIELD_FLAGS[known]
    return ""


# did you mean --------------------------------------------------------------------

#: Words people write for a relation, and the relation the suite knows it by.
RELATION_SYNONYMS = {
    "dad": "father",
    "daddy": "father",
    "papa": "father",
    "pa": "father",
    "mum": "mother",
    "mom": "mother",
    "mama": "mother",
    "mummy": "mother",
    "ma": "mother",
    "bro": "brother",
    "sis": "sister",
    "grandpa": "grandfather",
    "granddad": "grandfather",
    "grandad": "grandfather",
    "grandma": "grandmother",
    "granny": "grandmother",
    "nana": "grandmother",
    "nonna": "grandmother",
    "nonno": "grandfather",
    "earlier": "self",
    "me": "self",
    "missing": "self",
}

#: Relations the suite does not score, with what to say instead.
RELATION_NOT_SCORED = {
    "son": "the relatives are the missing person's: a son of the missing person is not a relation the suite scores",
    "daughter": "the relatives are the missing person's: a daughter of the missing person is not a relation "
    "the suite scores",
    "child": "a child of the missing person is not a relation the suite scores",
    "uncle": "an uncle is not a relation the suite scores",
    "aunt": "an aunt is not a relation the suite scores",
    "cousin": "a cousin is not a relation the suite scores",
}


def suggest_relation(word: str, known: list[str]) -> str:
    """' (did you mean father?)' for a mistyped or colloquial relation; '' when nothing is close."""
    word = word.strip().lower()
    if word in RELATION_SYNONYMS:
        return f"; did you mean {RELATION_SYNONYMS[word]}?"
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]}?"
    close = difflib.get_close_matches(word, list(RELATION_SYNONYMS), n=1, cutoff=0.75)
    if close:
        return f"; did you mean {RELATION_SYNONYMS[close[0]]}?"
    if word in RELATION_NOT_SCORED:
        return f" ({RELATION_NOT_SCORED[word]})"
    return ""


# reporting -----------------------------------------------------------------------


def _violations(error: client_errors.KinshipClientError, args) -> list[dict[str, str]]:
    return [{"field": v.field, "flag": flag_for(v.field, args), "description": v.description} for v in error.violations]


def _without_path(description: str, field: str) -> str:
    """A description that starts by naming its field's path (`relatives[0].photos[1]: no face ...`) without it:
    the flag names the place already."""
    head, sep, rest = description.partition(": ")
    if sep and head and (field == head or field.startswith(head + ".") or field.startswith(head + "[")):
        return rest
    return description


def _wants_json(args) -> bool:
    return bool(getattr(args, "json", False))


def _print_json(payload: dict) -> None:
    print(json.dumps({"error": payload}, indent=2), flush=True)


def report(args: argparse.Namespace, exc: BaseException) -> int:
    """Prints `exc` for the person (stderr) or, with --json, for a program (stdout); returns the exit code."""
    command = f"kinship {getattr(args, 'command', '')}".rstrip()
    if isinstance(exc, grpc.RpcError) and not isinstance(exc, client_errors.KinshipClientError):
        exc = client_errors.from_rpc_error(exc)
    if isinstance(exc, client_errors.KinshipClientError):
        return _report_rpc(command, args, exc)
    if isinstance(exc, CommandError):
        code, exit_code = exc.code, exc.exit_code
    else:  # ValueError, OSError: a value or a file the command was given
        code, exit_code = "FAILED", REFUSED
    message = str(exc)
    if _wants_json(args):
        _print_json({"code": code, "message": message, "exit_code": exit_code, "violations": []})
    else:
        print(f"{command}: {message}", file=sys.stderr)
    return exit_code


def _report_rpc(command: str, args, error: client_errors.KinshipClientError) -> int:
    exit_code = exit_code_of(error)
    violations = _violations(error, args)
    hint = ""
    if exit_code == UNREACHABLE and error.status != grpc.StatusCode.RESOURCE_EXHAUSTED:
        hint = "is `kinship serve all` running? `kinship status` shows each service"
    if error.retry_after is not None:
        hint = f"the service is busy: try again in {error.retry_after:g} s"
    if _wants_json(args):
        payload = {
            "code": error.status.name,
            "message": error.message,
            "exit_code": exit_code,
            "reason": error.reason,
            "violations": violations,
        }
        if error.request_id:
            payload["request_id"] = error.request_id
        if error.retry_after is not None:
            payload["retry_after_s"] = error.retry_after
        if hint:
            payload["hint"] = hint
        _print_json(payload)
        return exit_code
    lines = []
    if violations:
        lines.append(f"{command}: {error.status.name}: the request was refused, {len(violations)} problem(s):")
        for v in violations:
            where = v["flag"] or v["field"]
            field = f"  [{v['field']}]" if v["flag"] else ""
            lines.append(f"  {where}: {_without_path(v['description'], v['field'])}{field}")
    else:
        lines.append(f"{command}: {error.status.name}: {error.message}")
    if hint:
        lines.append(f"  ({hint})")
    if exit_code == SERVICE_FAILED and error.request_id:
        lines.append(f"  (request id {error.request_id}: quote it when reporting the problem)")
    print("\n".join(lines), file=sys.stderr)
    return exit_code
