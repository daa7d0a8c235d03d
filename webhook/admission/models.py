"""Pydantic models of the admission.k8s.io/v1 AdmissionReview, the webhook's wire boundary.

Only the fields the webhook reads are modelled strictly; the Pod itself stays a plain dict, since the
webhook only reads a few paths of it and must pass everything else through untouched.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ADMISSION_API_VERSION = "admission.k8s.io/v1"


class GroupVersionKind(BaseModel):
    model_config = ConfigDict(extra="allow")

    group: str = ""
    version: str = ""
    kind: str = ""


class GroupVersionResource(BaseModel):
    model_config = ConfigDict(extra="allow")

    group: str = ""
    version: str = ""
    resource: str = ""


class AdmissionRequest(BaseModel):
    """The `request` of an AdmissionReview; `uid` is required, it is echoed in the response."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    uid: str = Field(min_length=1)
    kind: GroupVersionKind = Field(default_factory=GroupVersionKind)
    resource: GroupVersionResource = Field(default_factory=GroupVersionResource)
    sub_resource: str | None = Field(default=None, alias="subResource")
    name: str | None = None
    namespace: str | None = None
    operation: str = ""
    object: dict[str, Any] | None = None
    dry_run: bool | None = Field(default=None, alias="dryRun")


class AdmissionReviewRequest(BaseModel):
    """An incoming AdmissionReview: must be admission.k8s.io/v1 and carry a request."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    api_version: Literal["admission.k8s.io/v1"] = Field(alias="apiVersion")
    kind: Literal["AdmissionReview"]
    request: AdmissionRequest


class AdmissionResponse(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    uid: str
    allowed: bool = True
    patch_type: Literal["JSONPatch"] | None = Field(default=None, alias="patchType")
    patch: str | None = None
    warnings: list[str] | None = None


class AdmissionReviewResponse(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    api_version: str = Field(default=ADMISSION_API_VERSION, alias="apiVersion")
    kind: str = "AdmissionReview"
    response: AdmissionResponse

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict the apiserver expects (camelCase, no nulls)."""
        return self.model_dump(by_alias=True, exclude_none=True)
