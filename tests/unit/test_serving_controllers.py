"""The pure parts of running Seldon's and KServe's controllers: webhook configurations
pointed at a host process."""

from __future__ import annotations

import base64

from lykeion.serving_controllers import url_webhooks


def test_webhooks_point_at_the_host_process_with_the_ca_and_keep_their_rules() -> None:
    shipped = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "inferenceservice.serving.kserve.io", "creationTimestamp": None},
        "webhooks": [
            {
                "name": "inferenceservice.kserve-webhook-server.validator",
                "clientConfig": {
                    "service": {"name": "$(webhookServiceName)", "namespace": "kserve",
                                "path": "/validate-serving-kserve-io-v1beta1-inferenceservice"}
                },
                "failurePolicy": "Fail",
                "rules": [{"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"]}],
            }
        ],
    }  # fmt: skip
    (hooked,) = url_webhooks([shipped], "https://127.0.0.1:9443", b"PEM")
    (hook,) = hooked["webhooks"]
    assert hook["clientConfig"] == {
        "url": "https://127.0.0.1:9443/validate-serving-kserve-io-v1beta1-inferenceservice",
        "caBundle": base64.b64encode(b"PEM").decode(),
    }
    assert hook["failurePolicy"] == "Fail" and hook["rules"] == shipped["webhooks"][0]["rules"]
    assert hooked["metadata"] == {"name": "inferenceservice.serving.kserve.io"}
    assert "service" in shipped["webhooks"][0]["clientConfig"]  # input untouched
