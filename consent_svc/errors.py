"""RFC 9457 problem details for every error, including Litestar's own and a lost database."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import asyncpg
import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.openapi import ResponseSpec
from litestar.plugins.problem_details import (
    ProblemDetailsConfig,
    ProblemDetailsException,
    ProblemDetailsPlugin,
)

from consent_svc.exceptions import Absent, Conflicting, Erased, FieldError, Invalid, ServiceError, Unrecorded

log = logging.getLogger("consent_svc.errors")

PROBLEM_JSON = "application/problem+json"


class Problem(msgspec.Struct, omit_defaults=True):
    """The problem body, for OpenAPI: `errors` only on validation problems."""

    type: str
    title: str
    status: int
    detail: str = ""
    errors: list[FieldError] = []


PROBLEM_DESCRIPTIONS = {
    400: "Malformed request (e.g. the body is not JSON)",
    401: "Missing, unknown or revoked API key",
    403: "The API key lacks the scope this operation needs",
    404: "Not found",
    409: "Conflict with stored data",
    410: "What was asked for was erased",
    429: "Too many requests: wait for the time in Retry-After",
    413: "The request body is larger than the configured limit",
    422: "The request is well-formed but not valid; `errors` names each field",
    503: "The database is unavailable or refused the write; nothing was stored; retry",
}


def problem_responses(
    *codes: int, keyed: bool = True, described: Mapping[int, str] | None = None
) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the problems an operation can answer (all application/problem+json). `keyed`: the
    operation takes an API key, so it may answer 401 and 403; `described`: what a code means here, where that
    is not what PROBLEM_DESCRIPTIONS says (a signature refused rather than a key)."""
    common = (400, 401, 403, 503) if keyed else (400, 503)
    descriptions = {**PROBLEM_DESCRIPTIONS, **(described or {})}
    return {
        code: ResponseSpec(
            data_container=Problem,
            media_type=PROBLEM_JSON,
            description=descriptions[code],
            generate_examples=False,
        )
        for code in sorted({*common, *codes})
    }


class ProblemError(ProblemDetailsException):
    """An error answered as application/problem+json; subclasses fix the status and type."""

    status = 400
    slug = "bad-request"
    default_title = "Bad request"

    def __init__(
        self,
        detail: str = "",
        *,
        errors: list[FieldError] | None = None,
        title: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        extra: dict[str, Any] = {}
        detail = detail or "; ".join(f"{e.field}: {e.message}" for e in errors or [])
        if errors:
            extra["errors"] = [msgspec.structs.asdict(e) for e in errors]
        super().__init__(
            detail=detail,
            status_code=status or self.status,
            type_=f"/problems/{self.slug}",
            title=title or self.default_title,
            extra=extra or None,
            headers=headers,
        )


class InvalidInput(ProblemError):
    status = 422
    slug = "validation"
    default_title = "The request is not valid"


MAX_ERRORS_REPORTED = 50
T = TypeVar("T")
U = TypeVar("U")


def each_valid(items: Iterable[T], prepare: Callable[[int, T], U], consequence: str) -> list[U]:
    """prepare(i, item) for every item of a batch, or one Invalid naming up to MAX_ERRORS_REPORTED bad fields of
    them all (`consequence`: what did not happen, e.g. "nothing was stored")."""
    prepared, errors = [], []
    for i, item in enumerate(items):
        try:
            prepared.append(prepare(i, item))
        except Invalid as exc:
            errors.extend(exc.errors)
            if len(errors) >= MAX_ERRORS_REPORTED:
                break
    if errors:
        shown = errors[:MAX_ERRORS_REPORTED]
        raise Invalid(
            f"{len(shown)} problem(s) in the batch; {consequence}. First: {shown[0].field}: {shown[0].message}",
            errors=shown,
        )
    return prepared


class Unauthorized(ProblemError):
    status = 401
    slug = "unauthorized"
    default_title = "Missing or unknown API key"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="consent-svc"'})


class SignatureRefused(Unauthorized):
    """A signed webhook's signature is missing, bad or stale (or its source unknown): no API key is involved."""

    slug = "signature-refused"
    default_title = "Webhook signature refused"


class Forbidden(ProblemError):
    status = 403
    slug = "forbidden"
    default_title = "The API key lacks the scope this operation needs"


class NotFound(ProblemError):
    status = 404
    slug = "not-found"
    default_title = "Not found"


class Conflict(ProblemError):
    status = 409
    slug = "conflict"
    default_title = "Conflict"


class Gone(ProblemError):
    status = 410
    slug = "gone"
    default_title = "Gone"


class Unavailable(ProblemError):
    status = 503
    slug = "unavailable"
    default_title = "Service unavailable"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail, headers={"Retry-After": "1"})


def _from_validation(exc: ValidationException) -> ProblemDetailsException:
    """Litestar's 400 for a body or parameter that does not fit its type -> our 422 with a field list."""
    errors = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if isinstance(item, dict):
            key, message = item.get("key"), str(item.get("message"))
            if message == "'data'":  # Litestar's word for an empty body where one is required
                errors.append(FieldError(field="body", message="a JSON body is required"))
                continue
            errors.append(FieldError(field="body" if key in (None, "data") else str(key), message=message))
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors) or str(exc.detail)
    return InvalidInput(detail, errors=errors)


def _from_decode(exc: msgspec.DecodeError) -> ProblemDetailsException:
    """A body decoded by msgspec (consent_svc.bodies): bad JSON is a 400, a bad shape a 422 naming the field."""
    message = str(exc)
    if not isinstance(exc, msgspec.ValidationError):
        return ProblemDetailsException(
            status_code=400,
            type_="/problems/malformed-json",
            title="The body is not valid JSON",
            detail=message,
        )
    reason, _, path = message.partition(" - at `$")
    field = path.rstrip("`").lstrip(".") or "body"
    return InvalidInput(f"{field}: {reason}", errors=[FieldError(field=field, message=reason)])


def _from_http(exc: HTTPException) -> ProblemDetailsException:
    status = exc.status_code
    if status >= 500:  # a fault of ours: logged here, and nothing of its insides in the answer
        log.error("server error %s: %s", status, type(exc).__name__)
        return ProblemDetailsException(
            status_code=status,
            type_="/problems/internal",
            title="Internal error",
            detail="An unexpected error",
        )
    slugs = {404: "not-found", 405: "method-not-allowed", 413: "too-large", 415: "unsupported-media-type"}
    slug = slugs.get(status, "http-" + str(status))
    titles = {
        400: "Bad request",
        413: "The request body is too large",
        405: "Method not allowed",
        404: "Not found",
    }
    if status == 400 and isinstance(exc.__cause__, SerializationException):
        slug, titles[400] = "malformed-json", "The body is not valid JSON"
    return ProblemDetailsException(
        status_code=status,
        type_=f"/problems/{slug}",
        title=titles.get(status, str(exc.detail) or "Error"),
        detail=str(exc.detail or ""),
        headers=exc.headers,
    )


# Each kind of domain refusal and the problem it is answered with: the one place a domain error gets its status.
PROBLEM_OF: dict[type[ServiceError], type[ProblemError]] = {
    Invalid: InvalidInput,
    Absent: NotFound,
    Conflicting: Conflict,
    Erased: Gone,
    Unrecorded: Unavailable,
}


def as_problem(exc: ServiceError) -> ProblemError:
    """The problem a domain refusal is answered with (pages that show it in place use this too)."""
    problem = next(PROBLEM_OF[kind] for kind in type(exc).__mro__ if kind in PROBLEM_OF)
    if problem is Unavailable:
        return Unavailable(exc.detail)
    return problem(
        exc.detail, title=exc.title if exc.title != exc.default_title else None, errors=exc.errors or None
    )


# What a page that shows a refusal in place catches: the edge's own problems and the domains' refusals.
REFUSALS = (ProblemError, ServiceError)


def problem_of(exc: ProblemError | ServiceError) -> ProblemError:
    return as_problem(exc) if isinstance(exc, ServiceError) else exc


def _from_database_down(exc: Exception) -> ProblemDetailsException:
    log.warning("database unavailable: %s", type(exc).__name__)
    return Unavailable("The database is unavailable; retry shortly")


def _from_database_refusal(exc: Exception) -> ProblemDetailsException:
    # Disk full or a read-only server: nothing was stored, and the caller must know it.
    log.error("database refused a write: %s", type(exc).__name__)
    return Unavailable("The database cannot store this now; nothing was stored")


def _from_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.scope.get("path_template", "?"))
    body = {
        "type": "/problems/internal",
        "title": "Internal error",
        "status": 500,
        "detail": "An unexpected error",
    }
    return Response(body, status_code=500, media_type=PROBLEM_JSON)


DATABASE_DOWN = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    # A database closed to new connections (ALLOW_CONNECTIONS false) or gone, and asyncpg's own state error
    # when a connection is cut mid-operation (tests/process/test_database_trouble.py drills both).
    asyncpg.ObjectNotInPrerequisiteStateError,
    asyncpg.InvalidCatalogNameError,
    asyncpg.InternalClientError,
    ConnectionError,
    TimeoutError,
)
DATABASE_REFUSAL = (
    asyncpg.ReadOnlySQLTransactionError,
    asyncpg.DiskFullError,
    asyncpg.InsufficientResourcesError,
)


def problem_plugin() -> ProblemDetailsPlugin:
    mapping: dict[type[Exception], Any] = {
        ValidationException: _from_validation,
        HTTPException: _from_http,
        msgspec.DecodeError: _from_decode,
        msgspec.ValidationError: _from_decode,
        ServiceError: as_problem,
    }
    mapping.update({exc: _from_database_down for exc in DATABASE_DOWN})
    mapping.update({exc: _from_database_refusal for exc in DATABASE_REFUSAL})
    return ProblemDetailsPlugin(ProblemDetailsConfig(exception_to_problem_detail_map=mapping))


exception_handlers = {Exception: _from_unexpected}
