"""Errors of the frontend's own (the worker's are in protocol.errors), and their JSON bodies.

All share protocol's ServiceError base, so one handler turns any of them into
`{"error": {"code", "message"}}` with the right HTTP status.
"""

from __future__ import annotations

from werkzeug.exceptions import HTTPException

from protocol import ServiceError


class BadRequest(ServiceError):
    """Base for problems with what the client sent."""

    code = "bad_request"
    status = 400


class MissingField(BadRequest):
    code = "missing_field"


class InvalidField(BadRequest):
    code = "invalid_field"


class InvalidImage(BadRequest):
    code = "invalid_image"


class InvalidLabels(BadRequest):
    code = "invalid_labels"
    status = 422


class LabelsMismatch(BadRequest):
    code = "labels_mismatch"
    status = 422


class NotAClassifier(BadRequest):
    """The model's output holds features (an embedding), not scores of classes."""

    code = "model_not_classifier"
    status = 422


class PayloadTooLarge(BadRequest):
    code = "payload_too_large"
    status = 413


class NotFound(BadRequest):
    code = "not_found"
    status = 404


class DefaultModelMissing(ServiceError):
    code = "default_model_missing"
    status = 503


class ModelNotFound(NotFound):
    code = "model_not_found"


class ModelTooLarge(PayloadTooLarge):
    code = "model_too_large"


class ModelIsDefault(BadRequest):
    code = "model_is_default"
    status = 409


class StoreUnavailable(ServiceError):
    code = "store_unavailable"
    status = 507


class StoreFull(StoreUnavailable):
    """STORE_MAX_MODELS or STORE_MAX_BYTES would be passed."""

    code = "store_full"


class StoreShareFull(StoreFull):
    """This client's models would pass STORE_SHARE_MODELS or STORE_SHARE_BYTES."""

    code = "store_share_full"


class TooManyRegistrations(BadRequest):
    """This client registered REGISTRATIONS_PER_HOUR models within the last hour."""

    code = "too_many_registrations"
    status = 429
    retry_after_seconds = 60


class TooManyUploads(BadRequest):
    """This client already has UPLOADS_PER_CLIENT uploaded or registered models running."""

    code = "too_many_uploads"
    status = 429
    retry_after_seconds = 1


class AdminDisabled(BadRequest):
    """API_TOKEN is set and ADMIN_TOKEN is not: nobody may register or delete."""

    code = "admin_disabled"
    status = 403


class HostNotAllowed(BadRequest):
    """A browser reached the service by a name not in ALLOWED_HOSTS (DNS rebinding)."""

    code = "host_not_allowed"
    status = 421


class CrossOrigin(BadRequest):
    """A state-changing request from another site's page (its Origin is not ours)."""

    code = "cross_origin"
    status = 403


class Unauthorized(BadRequest):
    code = "unauthorized"
    status = 401


class ModelNameAmbiguous(BadRequest):
    """Several models registered before names were unique share the name asked for."""

    code = "model_name_ambiguous"
    status = 409


class ModelNameTaken(BadRequest):
    """Another model holds the name a registration or a rename asks for."""

    code = "model_name_taken"
    status = 409


class TooManyImages(PayloadTooLarge):
    code = "too_many_images"


class TooManyPixels(PayloadTooLarge):
    """The images of one call, at the model's input size, would take more memory than a frame
    may carry (MAX_PIXEL_BYTES): refused before anything is decoded."""

    code = "too_many_pixels"


class TooManyDecodedPixels(PayloadTooLarge):
    """The images of one call would decode to more than DECODE_PIXELS_PER_CALL pixels."""

    code = "too_many_decoded_pixels"


class TooManyDecodes(BadRequest):
    """This client's calls are already decoding DECODE_PIXELS_PER_CLIENT pixels."""

    code = "too_many_decodes"
    status = 429
    retry_after_seconds = 1


class TooMuchWork(BadRequest):
    """This client's calls already have WORK_PER_CLIENT classifications running."""

    code = "too_much_work"
    status = 429
    retry_after_seconds = 1


class ModelInputTooLarge(BadRequest):
    """The model declares an input side over MAX_INPUT_SIDE: each image would be resized to it."""

    code = "model_input_too_large"
    status = 422


class RouteError(ServiceError):
    """Werkzeug's own refusals (no such route, method not allowed), as a ServiceError."""

    def __init__(self, error: HTTPException) -> None:
        super().__init__(error.description or error.name)
        self.code = (error.name or "error").lower().replace(" ", "_")
        self.status = error.code or 500
