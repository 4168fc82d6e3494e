"""Conformance of the kmsync KMS emulator with the official Alibaba Cloud Python SDK.

Run: scripts/sdk-venv.sh && cargo build && .venv/bin/python -m pytest tests/sdk -q
The emulator binary is $KMSYNC_BIN, else $CARGO_TARGET_DIR/debug/kmsync, else target/debug/kmsync.
It is started once per module on 127.0.0.1:0 with --port-file and stopped by its PID.
"""

import base64
import json
import os
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from alibabacloud_kms20160120 import models as kms
from alibabacloud_kms20160120.client import Client
from alibabacloud_tea_openapi import models as oa
from alibabacloud_tea_openapi.client import Client as OpenApiClient
from alibabacloud_tea_openapi.exceptions import ClientException
from alibabacloud_tea_util import models as util_models

AK_ID, AK_SECRET = "testid", "testsecret"
REPO = Path(__file__).resolve().parents[2]
MODES = ["v3", "v2", "sts-v3", "sts-v2"]


def emulator_binary() -> str:
    if os.environ.get("KMSYNC_BIN"):
        return os.environ["KMSYNC_BIN"]
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return str(target / "debug" / "kmsync")


@pytest.fixture(scope="module")
def emu():
    tmp = tempfile.TemporaryDirectory()
    port_file = Path(tmp.name) / "port"
    log = open(Path(tmp.name) / "emulator.log", "wb")
    proc = subprocess.Popen(
        [emulator_binary(), "emulator", "--listen", "127.0.0.1:0", "--access-key", f"{AK_ID}:{AK_SECRET}",
         "--port-file", str(port_file), "--region", "cn-hangzhou"],
        stdout=subprocess.PIPE, stderr=log,
    )
    try:
        line = proc.stdout.readline().decode().strip()
        assert line.startswith("kmsync emulator listening on http://127.0.0.1:"), line
        url = port_file.read_text().strip()
        assert line.endswith(url)
        yield url
    finally:
        proc.terminate()  # by PID: the process this fixture started
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
        tmp.cleanup()


def admin(url, path, method="GET", body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        raw = resp.read()
        return json.loads(raw) if raw else None


def config(url, ak=AK_ID, secret=AK_SECRET, token=None, algorithm=None):
    kw = dict(access_key_id=ak, access_key_secret=secret, endpoint=url.removeprefix("http://"), protocol="http")
    if token:
        kw["security_token"] = token
    if algorithm:
        kw["signature_algorithm"] = algorithm
    return oa.Config(**kw)


def sts_call(url, action, query, algorithm="v2", anonymous=False):
    """An STS 2015-04-01 call through the SDK's generic OpenAPI client."""
    client = OpenApiClient(config(url, algorithm=algorithm))
    params = oa.Params(action=action, version="2015-04-01", protocol="HTTP", pathname="/", method="POST",
                       auth_type="Anonymous" if anonymous else "AK", style="RPC",
                       req_body_type="formData", body_type="json")
    resp = client.call_api(params, oa.OpenApiRequest(query=query), util_models.RuntimeOptions())
    return resp["body"]


def make_client(url, mode):
    algorithm = "v2" if mode.endswith("v2") else None
    if mode.startswith("sts"):
        body = sts_call(url, "AssumeRole", {"RoleArn": "acs:ram::1234567890123456:role/kmsync",
                                            "RoleSessionName": "conformance", "DurationSeconds": "900"})
        c = body["Credentials"]
        assert c["AccessKeyId"].startswith("STS.")
        return Client(config(url, c["AccessKeyId"], c["AccessKeySecret"], c["SecurityToken"], algorithm))
    return Client(config(url, algorithm=algorithm))


@pytest.fixture(params=MODES)
def kc(request, emu):
    return request.param, make_client(emu, request.param)


def create(client, name, data="v1-data", version="v1", **kw):
    return client.create_secret(kms.CreateSecretRequest(secret_name=name, secret_data=data, version_id=version, **kw))


def get(client, name, **kw):
    return client.get_secret_value(kms.GetSecretValueRequest(secret_name=name, **kw)).body


def expect_error(fn, status, code):
    with pytest.raises(ClientException) as info:
        fn()
    assert (info.value.status_code, info.value.code) == (status, code), info.value.message
    assert info.value.request_id
    return info.value


def test_single_call_rotation(kc):
    mode, client = kc
    name = f"{mode}/single"
    assert create(client, name).body.version_id == "v1"
    put = client.put_secret_value(kms.PutSecretValueRequest(secret_name=name, secret_data="v2-data", version_id="v2"))
    assert put.body.version_stages.version_stage == ["ACSCurrent"]
    cur = get(client, name)
    assert (cur.version_id, cur.secret_data, cur.version_stages.version_stage) == ("v2", "v2-data", ["ACSCurrent"])
    prev = get(client, name, version_stage="ACSPrevious")
    assert (prev.version_id, prev.secret_data) == ("v1", "v1-data")


def test_multi_call_rotation(kc):
    mode, client = kc
    name = f"{mode}/multi"
    create(client, name, data='{"user":"app","pwd":"old p@ss+&="}')
    pw = client.get_random_password(kms.GetRandomPasswordRequest(password_length="24", exclude_punctuation="true"))
    password = pw.body.random_password
    assert len(password) == 24 and password.isalnum()
    value = json.dumps({"user": "app", "pwd": password})
    client.put_secret_value(kms.PutSecretValueRequest(secret_name=name, secret_data=value, version_id="v2",
                                                      version_stages='["MyPendingLabel"]'))
    assert get(client, name).version_id == "v1"  # current untouched
    assert get(client, name, version_stage="MyPendingLabel").secret_data == value
    client.update_secret_version_stage(kms.UpdateSecretVersionStageRequest(
        secret_name=name, version_stage="ACSCurrent", move_to_version="v2"))
    cur = get(client, name)
    assert (cur.version_id, cur.secret_data) == ("v2", value)
    assert get(client, name, version_stage="ACSPrevious").version_id == "v1"
    versions = client.list_secret_version_ids(kms.ListSecretVersionIdsRequest(secret_name=name)).body
    stages = {v.version_id: sorted(v.version_stages.version_stage) for v in versions.version_ids.version_id}
    assert stages == {"v1": ["ACSPrevious"], "v2": ["ACSCurrent", "MyPendingLabel"]}


def test_ten_version_roll_off(kc):
    mode, client = kc
    name = f"{mode}/rolloff"
    create(client, name)
    for i in range(2, 13):
        client.put_secret_value(kms.PutSecretValueRequest(secret_name=name, secret_data=f"d{i}", version_id=f"v{i}"))
    body = client.list_secret_version_ids(kms.ListSecretVersionIdsRequest(
        secret_name=name, include_deprecated="true", page_size=50)).body
    ids = [v.version_id for v in body.version_ids.version_id]
    assert body.total_count == 10 and ids == [f"v{i}" for i in range(3, 13)]
    labeled = client.list_secret_version_ids(kms.ListSecretVersionIdsRequest(secret_name=name)).body
    assert labeled.total_count == 2
    expect_error(lambda: get(client, name, version_id="v1"), 404, "Forbidden.ResourceNotFound")


def test_size_and_tag_limits(kc):
    mode, client = kc
    name = f"{mode}/limits"
    create(client, name, data="x" * 30720)
    expect_error(lambda: client.put_secret_value(kms.PutSecretValueRequest(
        secret_name=name, secret_data="x" * 30721, version_id="v2")), 400, "InvalidParameter")
    tags = json.dumps([{"TagKey": f"k{i}", "TagValue": f"v{i}"} for i in range(20)])
    create(client, f"{name}-tags", tags=tags)
    desc = client.describe_secret(kms.DescribeSecretRequest(secret_name=f"{name}-tags", fetch_tags="true")).body
    assert len(desc.tags.tag) == 20
    expect_error(lambda: client.tag_resource(kms.TagResourceRequest(
        secret_name=f"{name}-tags", tags='[{"TagKey":"k20","TagValue":"v"}]')), 400, "InvalidParameter")
    too_many = json.dumps([{"TagKey": f"k{i}", "TagValue": "v"} for i in range(21)])
    expect_error(lambda: create(client, f"{name}-21", tags=too_many), 400, "InvalidParameter")
    binary = base64.b64encode(b"\x00\x01\xff").decode()
    create(client, f"{name}-bin", data=binary, secret_data_type="binary")
    out = get(client, f"{name}-bin")
    assert (out.secret_data, out.secret_data_type) == (binary, "binary")


def test_scheduled_deletion_and_restore(kc):
    mode, client = kc
    name = f"{mode}/deletion"
    create(client, name)
    expect_error(lambda: client.delete_secret(kms.DeleteSecretRequest(
        secret_name=name, recovery_window_in_days="6")), 400, "InvalidParameter")
    deleted = client.delete_secret(kms.DeleteSecretRequest(secret_name=name, recovery_window_in_days="7")).body
    assert deleted.planned_delete_time
    expect_error(lambda: get(client, name), 409, "Rejected.ResourceInDeleteWindow")
    expect_error(lambda: create(client, name), 409, "Rejected.ResourceInDeleteWindow")
    desc = client.describe_secret(kms.DescribeSecretRequest(secret_name=name)).body
    assert desc.planned_delete_time == deleted.planned_delete_time
    listed = client.list_secrets(kms.ListSecretsRequest(
        filters=json.dumps([{"Key": "SecretName", "Values": [name]}]))).body
    assert listed.total_count == 1 and listed.secret_list.secret[0].planned_delete_time
    client.restore_secret(kms.RestoreSecretRequest(secret_name=name))
    assert get(client, name).secret_data == "v1-data"
    client.delete_secret(kms.DeleteSecretRequest(secret_name=name, force_delete_without_recovery="true"))
    expect_error(lambda: client.describe_secret(kms.DescribeSecretRequest(secret_name=name)),
                 404, "Forbidden.ResourceNotFound")


def test_not_found_and_conflict(kc):
    mode, client = kc
    name = f"{mode}/errors"
    err = expect_error(lambda: get(client, name), 404, "Forbidden.ResourceNotFound")
    assert "The resource is not found." in err.message
    create(client, name)
    expect_error(lambda: create(client, name), 409, "Rejected.ResourceExist")
    client.put_secret_value(kms.PutSecretValueRequest(secret_name=name, secret_data="two", version_id="v2"))
    # same id, same data: idempotent; same id, other data: conflict
    client.put_secret_value(kms.PutSecretValueRequest(secret_name=name, secret_data="two", version_id="v2"))
    expect_error(lambda: client.put_secret_value(kms.PutSecretValueRequest(
        secret_name=name, secret_data="other", version_id="v2")), 409, "Rejected.ResourceExist")


@pytest.mark.parametrize("algorithm", [None, "v2"])
def test_bad_signature_and_unknown_key(emu, algorithm):
    wrong = Client(config(emu, secret="not-the-secret", algorithm=algorithm))
    err = expect_error(lambda: get(wrong, "any"), 400, "SignatureDoesNotMatch")
    assert "server string to sign is:" in err.message
    unknown = Client(config(emu, ak="nobody", algorithm=algorithm))
    expect_error(lambda: get(unknown, "any"), 404, "InvalidAccessKeyId.NotFound")
    fake_sts = Client(config(emu, token="forged-token", algorithm=algorithm))
    expect_error(lambda: get(fake_sts, "any"), 400, "InvalidSecurityToken.MismatchWithAccessKey")


def test_throttling_via_admin_faults(emu):
    client = Client(config(emu))
    create(client, "throttle/s")
    faults = {"throttling": {"enabled": True, "groups": {"getValue": {"qps": 0.001, "burst": 1}}}}
    admin(emu, "/admin/faults", "PUT", faults)
    try:
        get(client, "throttle/s")
        expect_error(lambda: get(client, "throttle/s"), 429, "Rejected.Throttling")
        client.list_secrets(kms.ListSecretsRequest())  # other groups unaffected
    finally:
        admin(emu, "/admin/faults", "PUT", {})
    calls = admin(emu, "/admin/calls")
    assert calls["calls"]["GetSecretValue"]["Rejected.Throttling"] >= 1


def test_injected_server_error(emu):
    from alibabacloud_tea_openapi.exceptions import ServerException
    client = Client(config(emu))
    admin(emu, "/admin/faults", "PUT", {"errors": [
        {"action": "ListSecrets", "rate": 1.0, "code": "ServiceUnavailableTemporary", "status": 503}]})
    try:
        with pytest.raises(ServerException) as info:
            client.list_secrets(kms.ListSecretsRequest())  # other groups unaffected
        assert (info.value.status_code, info.value.code) == (503, "ServiceUnavailableTemporary")
    finally:
        admin(emu, "/admin/faults", "PUT", {})


def jwt(aud, exp):
    enc = lambda obj: base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")
    claims = {"aud": [aud], "exp": exp, "iat": int(time.time()), "iss": "https://oidc.example", "sub": "system:serviceaccount:ns:app"}
    return f"{enc({'alg': 'RS256'})}.{enc(claims)}.c2lnbmF0dXJl"


def test_assume_role_with_oidc_anonymous(emu):
    query = {"RoleArn": "acs:ram::1234567890123456:role/kmsync",
             "OIDCProviderArn": "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c1",
             "OIDCToken": jwt("sts.aliyuncs.com", int(time.time()) + 600), "RoleSessionName": "rrsa"}
    body = sts_call(emu, "AssumeRoleWithOIDC", query, algorithm=None, anonymous=True)
    c = body["Credentials"]
    assert body["OIDCTokenInfo"]["Subject"] == "system:serviceaccount:ns:app"
    client = Client(config(emu, c["AccessKeyId"], c["AccessKeySecret"], c["SecurityToken"]))
    create(client, "oidc/s")
    assert get(client, "oidc/s").secret_data == "v1-data"
    query["OIDCToken"] = jwt("someone-else", int(time.time()) + 600)
    with pytest.raises(ClientException) as info:
        sts_call(emu, "AssumeRoleWithOIDC", query, algorithm=None, anonymous=True)
    assert info.value.code == "AuthenticationFail.OIDCToken.InvalidAudience"


def test_metrics_text(emu):
    with urllib.request.urlopen(emu + "/admin/metrics", timeout=10) as resp:
        text = resp.read().decode()
    assert 'kms_emulator_calls_total{action="CreateSecret",outcome="Success"}' in text


@pytest.fixture(scope="module")
def tls_emu():
    """`kmsync emulator --tls`: yields (https URL, path of the generated CA PEM)."""
    tmp = tempfile.TemporaryDirectory()
    port_file, ca_file = Path(tmp.name) / "port", Path(tmp.name) / "ca.pem"
    log = open(Path(tmp.name) / "emulator.log", "wb")
    proc = subprocess.Popen(
        [emulator_binary(), "emulator", "--tls", "--tls-ca-out", str(ca_file), "--access-key",
         f"{AK_ID}:{AK_SECRET}", "--port-file", str(port_file)],
        stdout=subprocess.PIPE, stderr=log,
    )
    try:
        line = proc.stdout.readline().decode().strip()
        assert line.startswith("kmsync emulator listening on https://127.0.0.1:"), line
        yield port_file.read_text().strip(), str(ca_file)
    finally:
        proc.terminate()  # by PID: the process this fixture started
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
        tmp.cleanup()


@pytest.mark.parametrize("algorithm", [None, "v2"])
def test_https_with_the_generated_ca(tls_emu, algorithm):
    """The SDK's own HTTPS path (protocol='https', Config.ca = CA file, verification on)."""
    url, ca = tls_emu
    kw = dict(access_key_id=AK_ID, access_key_secret=AK_SECRET, endpoint=url.removeprefix("https://"),
              protocol="https", ca=ca)
    if algorithm:
        kw["signature_algorithm"] = algorithm
    client = Client(oa.Config(**kw))
    name = f"tls-{algorithm or 'v3'}/single"
    create(client, name)
    client.put_secret_value(kms.PutSecretValueRequest(secret_name=name, secret_data="v2-data", version_id="v2"))
    cur = get(client, name)
    assert (cur.version_id, cur.secret_data) == ("v2", "v2-data")
    assert get(client, name, version_stage="ACSPrevious").version_id == "v1"


def test_https_without_the_ca_is_refused(tls_emu):
    """Without Config.ca the SDK verifies against its default roots and fails the handshake.

    The SDK keeps one requests Session per scheme://host:port for the whole process and reuses
    its pooled, already verified connections whatever the new client's ca is, so this test
    addresses the emulator as localhost:PORT (also a SAN of the generated certificate), a host
    key no trusting client of this module uses.
    """
    url, _ = tls_emu
    port = url.rsplit(":", 1)[1]
    client = Client(oa.Config(access_key_id=AK_ID, access_key_secret=AK_SECRET, endpoint=f"localhost:{port}",
                              protocol="https"))
    with pytest.raises(Exception) as info:
        create(client, "tls/untrusted")
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value), info.value
