"""Errors on the page: the API's problems in words, next to what they concern, and the key header."""

from __future__ import annotations

import json

from web_helpers import needs_chromium, open_page

pytestmark = needs_chromium


def _submit(page, path) -> None:
    open_page(page, "/")
    page.set_input_files("#file", str(path))
    page.select_option("#method", "poisson")
    page.check("input[name=preset][value=fast]")
    page.click("#submit")


def test_malformed_file_is_explained_next_to_the_picker(page, clouds):
    open_page(page, "/")
    page.set_input_files("#file", str(clouds["malformed"]))
    # The browser's own reading finds the bad line before anything is sent...
    page.wait_for_function("document.getElementById('file-error').textContent.includes('line 2')")
    assert "“zero” is not a number" in page.text_content("#file-error")
    page.select_option("#method", "poisson")
    page.click("#submit")
    # ...and the server's answer (422 malformed_file) replaces it, in words, at the same place.
    page.wait_for_function("document.getElementById('file-error').textContent.includes('Details')")
    text = page.text_content("#file-error")
    assert text.startswith("This file couldn't be read: it looks damaged") and "broken.xyz" in text, text
    assert page.get_attribute("#file", "aria-invalid") == "true"
    assert page.text_content("#form-error") == ""
    assert page.get_attribute("#file", "aria-describedby").split() == ["file-info", "file-error"]
    assert page.is_hidden("#progress-box")  # no job was made


def test_unsupported_format_and_bad_spec(page, clouds):
    _submit(page, clouds["unsupported"])
    page.wait_for_function("document.getElementById('file-error').textContent.includes('Details')")
    assert page.text_content("#file-error").startswith("This kind of file is not supported here.")
    assert "No preview in the browser" in page.text_content("#file-info")

    # A spec the API refuses (422 invalid_spec) is shown under the form, not the file picker.
    page.set_input_files("#file", str(clouds["sphere"]))
    page.eval_on_selector("#method option[value=udf]", "o => { o.value = 'marching'; o.selected = true; }")
    page.click("#submit")
    page.wait_for_function("document.getElementById('form-error').textContent.length > 0")
    text = page.text_content("#form-error")
    assert text.startswith("The server did not accept these settings.") and "spec.method" in text, text
    assert page.text_content("#file-error") == ""


def test_problems_in_words_and_the_api_key(page, clouds):
    """413, 429 and 401 answers (served here by request interception) and the key header."""
    answers = {
        "413": (413, {"code": "payload_too_large", "detail": "the request body exceeds the limit of 268435456 bytes"},
                {}),
        "429": (429, {"code": "too_many_queued_jobs", "detail": "100 jobs queued"}, {"Retry-After": "30"}),
        "401": (401, {"code": "unauthorized", "detail": "the API key is not valid"}, {}),
    }
    seen: list[dict] = []
    current = {"answer": "413"}

    def fulfil(route, request):
        if request.method != "POST":
            return route.continue_()
        seen.append(request.headers)
        status, body, headers = answers[current["answer"]]
        route.fulfill(status=status, content_type="application/problem+json", headers=headers,
                      body=json.dumps({"type": "urn:surfrecon:problem:" + body["code"], "title": "t",
                                       "status": status, **body}))

    page.route("**/v1/jobs", fulfil)
    _submit(page, clouds["sphere"])
    page.wait_for_function("document.getElementById('file-error').textContent.length > 0")
    assert page.text_content("#file-error") == "This file is too large: the server takes at most 256 MB."

    current["answer"] = "429"
    page.click("#submit")
    page.wait_for_function("document.getElementById('form-error').textContent.includes('Try again')")
    assert page.text_content("#form-error") == "You already have many jobs waiting. Try again in 30 s."
    assert page.text_content("#file-error") == ""

    current["answer"] = "401"
    page.click("#submit")
    page.wait_for_function("document.getElementById('key-error').textContent.length > 0")
    assert "needs a valid API key" in page.text_content("#key-error")
    assert page.evaluate("document.getElementById('key-box').open")
    assert page.evaluate("document.activeElement.id") == "api-key"  # focus moves to the field to fix

    page.fill("#api-key", "sr_test-key")
    page.press("#api-key", "Enter")
    page.click("#submit")
    page.wait_for_function("document.getElementById('key-error').textContent.length > 0")
    assert "x-api-key" not in seen[0] and seen[-1]["x-api-key"] == "sr_test-key"
    page.reload()  # kept in the browser
    assert page.input_value("#api-key") == "sr_test-key"
