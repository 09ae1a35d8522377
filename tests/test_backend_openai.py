"""The openai client's own error handling, against a scripted local HTTP server: retries with backoff,
fallbacks for servers without token-id prompts / n > 1 / top_k=-1 (remembered per server), load spreading
over several base URLs, response formats (OpenAI legacy and llama.cpp), and errors that name URL and cause.
(The contract suite runs this backend against a real llama.cpp server.)"""

from __future__ import annotations

import time

import pytest

from astro_reasoner.backends import BackendError, make_backend
from astro_reasoner.io import stable_seed
from astro_reasoner.types import GenParams
from backend_helpers import ScriptedServer, completion_response, free_port

SENT_ALWAYS = {"model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "min_p", "n", "stop",
               "logprobs", "seed", "repetition_penalty", "repeat_penalty"}


@pytest.fixture
def client_for(tiny_model_dir):
    made = []

    def build(urls, **options):
        options.setdefault("server_model", "scripted-model")  # what the scripted server serves
        policy = make_backend("openai", str(tiny_model_dir), base_url=urls, backoff=0.01, **options)
        made.append(policy)
        return policy

    yield build
    for p in made:
        p.close()


def ok(body, count):
    return 200, completion_response([f"s{k}" for k in range(body["n"])])


def test_retries_5xx_and_dropped_connections_then_succeeds(client_for):
    script = {1: (503, "busy"), 2: "drop", 3: (502, "bad gateway")}
    with ScriptedServer(lambda body, count: script.get(count) or ok(body, count)) as srv:
        (comps,), = [client_for(srv.url, max_retries=3).generate(["hi"], GenParams(max_tokens=3, seed=1))]
    assert len(srv.requests) == 4 and [c.text for c in comps] == ["s0"]
    assert SENT_ALWAYS <= set(srv.requests[-1])  # every sampling field explicit, server defaults never used


def test_gives_up_after_retries_naming_url_and_cause(client_for):
    with ScriptedServer(lambda body, count: (503, "overloaded, try later")) as srv:
        with pytest.raises(BackendError, match=rf"{srv.url}/completions failed after 3 attempts: overloaded"):
            client_for(srv.url, max_retries=2).generate(["hi"], GenParams(max_tokens=3))
    assert len(srv.requests) == 3


def test_client_errors_are_not_retried(client_for):
    with ScriptedServer(lambda body, count: (401, {"error": "invalid api key"})) as srv:
        with pytest.raises(BackendError, match=r"rejected the request \(HTTP 401\).*invalid api key"):
            client_for(srv.url).generate(["hi"], GenParams(max_tokens=3))
    assert len(srv.requests) == 1


def test_timeouts_are_retried_then_reported(client_for):
    def slow(body, count):
        time.sleep(0.5)
        return ok(body, count)

    with ScriptedServer(slow) as srv:
        with pytest.raises(BackendError, match="failed after 2 attempts: timed out"):
            client_for(srv.url, timeout=0.1, max_retries=1).generate(["hi"], GenParams(max_tokens=3))


def test_n_ignored_falls_back_to_separate_seeded_requests_and_is_remembered(client_for):
    # like llama-cpp-python: one choice whatever n says; its text echoes the seed it was given
    with ScriptedServer(lambda b, c: (200, completion_response([f"seed={b.get('seed')}"]))) as srv:
        policy = client_for(srv.url)
        (comps,), = [policy.generate(["hi"], GenParams(n=3, max_tokens=3, seed=7))]
        assert [c.text for c in comps] == [f"seed={s}" for s in (7, stable_seed(7, 1), stable_seed(7, 2))]
        assert [r["n"] for r in srv.requests] == [3, 1, 1]
        srv.requests.clear()
        results = policy.generate(["a", "b"], GenParams(n=2, max_tokens=3, seed=7))
    assert [len(r) for r in results] == [2, 2]
    assert [r["n"] for r in srv.requests] == [1, 1, 1, 1]  # no more n=2 attempts once the server showed it


def test_n_rejected_falls_back_to_separate_requests(client_for):
    def old_llama_server(body, count):
        if body["n"] > 1:
            return 400, {"error": {"message": "Only one completion choice is allowed"}}
        return ok(body, count)

    with ScriptedServer(old_llama_server) as srv:
        (comps,), = [client_for(srv.url).generate(["hi"], GenParams(n=2, max_tokens=3, seed=1))]
    assert len(comps) == 2 and [r["n"] for r in srv.requests] == [2, 1, 1]
    assert [r["seed"] for r in srv.requests[1:]] == [1, stable_seed(1, 1)]


def test_token_id_prompts_and_top_k_rejected_fall_back_to_what_the_server_takes(client_for, tiny_model_dir):
    def llama_cpp_like(body, count):
        if not isinstance(body["prompt"], str):
            return 500, {"error": {"message": "1 validation error: ('body', 'prompt') Input should be a valid string"}}
        if body["top_k"] < 0:
            return 500, {"error": {"message": "1 validation error: ('body', 'top_k') should be >= 0"}}
        return ok(body, count)

    with ScriptedServer(llama_cpp_like) as srv:
        policy = client_for(srv.url)
        policy.generate(["first prompt"], GenParams(max_tokens=3))
        first_round = len(srv.requests)
        policy.generate(["second prompt"], GenParams(max_tokens=3))
    assert first_round == 3  # ids+top_k=-1, string+top_k=-1, string+top_k=0
    assert srv.requests[-1]["prompt"] == "second prompt" and srv.requests[-1]["top_k"] == 0
    assert len(srv.requests) == 4  # remembered: the second call went right the first time


def test_token_ids_are_sent_to_servers_that_take_them(client_for):
    with ScriptedServer(ok) as srv:
        policy = client_for(srv.url)
        policy.generate(["Tom has 3 boxes"], GenParams(max_tokens=3))
    assert srv.requests[0]["prompt"] == policy.prompts.encode_prompt("Tom has 3 boxes")
    assert srv.requests[0]["model"] == "scripted-model"


def test_a_server_serving_another_model_is_refused_with_what_it_serves(client_for, tiny_model_dir):
    """Never a silent substitute: a base model answering for a checkpoint would corrupt every table."""
    with ScriptedServer(ok, models=("base-model", "other-model")) as srv:
        policy = client_for(srv.url, server_model=None)  # asks for the checkpoint by its own name
        with pytest.raises(BackendError, match=rf"{srv.url} does not serve model '{tiny_model_dir}'; "
                                               r"it serves: base-model, other-model\. .*--model_alias"):
            policy.generate(["hi"], GenParams(max_tokens=3))
        with pytest.raises(BackendError, match="does not serve model 'checkpoint-7'"):
            client_for(srv.url, server_model="checkpoint-7").generate(["hi"], GenParams(max_tokens=3))
        assert srv.requests == []  # refused before any completion was requested
        client_for(srv.url, server_model="other-model").generate(["hi"], GenParams(max_tokens=3))
    assert [r["model"] for r in srv.requests] == ["other-model"]


def test_the_served_name_is_ours_by_default_and_a_server_without_models_is_asked_by_name(client_for, tiny_model_dir):
    with ScriptedServer(ok, models=(str(tiny_model_dir),)) as srv:
        client_for(srv.url, server_model=None).generate(["hi"], GenParams(max_tokens=3))
    with ScriptedServer(ok, models=None) as bare:
        client_for(bare.url, server_model=None).generate(["hi"], GenParams(max_tokens=3))
    assert srv.requests[0]["model"] == bare.requests[0]["model"] == str(tiny_model_dir)


def test_failures_name_the_server_and_the_request(client_for):
    with ScriptedServer(lambda body, count: (503, "engine dead")) as srv:
        with pytest.raises(BackendError, match=rf"{srv.url}/completions failed after 2 attempts: engine dead "
                                               r"\[request: n=1 max_tokens=3 temperature=0.5 seed=9 prompt of "
                                               r"\d+ tokens ending 'Tom has 3 boxes'\].*resumes"):
            client_for(srv.url, max_retries=1).generate(["Tom has 3 boxes"],
                                                        GenParams(max_tokens=3, temperature=0.5, seed=9))


def test_load_is_spread_and_a_dead_url_is_avoided(client_for):
    dead = f"http://127.0.0.1:{free_port()}/v1"

    def slowish(body, count):
        time.sleep(0.05)
        return ok(body, count)

    with ScriptedServer(slowish) as a, ScriptedServer(slowish) as b:
        policy = client_for([a.url, b.url], concurrency=4)
        assert len(policy.generate([f"p{i}" for i in range(8)], GenParams(max_tokens=3))) == 8
        assert len(a.requests) >= 2 and len(b.requests) >= 2
        policy = client_for([dead, a.url], concurrency=2, max_retries=2)
        results = policy.generate([f"q{i}" for i in range(4)], GenParams(max_tokens=3))
    assert all(r[0].text == "s0" for r in results)


@pytest.mark.parametrize("choice_extra, tokens, expected", [
    ({"finish_reason": "stop", "stop_reason": "\n\n"}, None, "stop"),  # vLLM: the stop string that matched
    ({"finish_reason": "stop", "stop_reason": None}, None, "eos"),  # vLLM: ended by EOS
    ({"finish_reason": "stop", "matched_stop": 2}, None, "eos"),  # SGLang: the EOS token id
    ({"finish_reason": "stop"}, ["Step", " one", ".\n\n"], "stop"),  # llama-cpp-python: stop token listed
    ({"finish_reason": "stop"}, ["Step", " one", "."], "eos"),
    ({"finish_reason": "length"}, ["Step", " one", "."], "length"),
])
def test_finish_reasons_from_each_server_style(client_for, choice_extra, tokens, expected):
    toks = tokens or ["Step", " one", "."]

    def reply(body, count):
        choice = {"index": 0, "text": "Step one.", **choice_extra,
                  "logprobs": {"tokens": toks, "token_logprobs": [-0.25] * len(toks)}}
        return 200, {"choices": [choice]}

    with ScriptedServer(reply) as srv:
        (c,), = client_for(srv.url).generate(["hi"], GenParams(max_tokens=3, stop=("\n\n",)))
    assert (c.finish_reason, c.text, c.tokens, c.logprob_sum) == (expected, "Step one.", len(toks), -0.25 * len(toks))


@pytest.mark.parametrize("content, expected, tokens", [
    ([("Step", 1), (" one", 2), (".", 3)], "stop", 4),  # the token completing "\n\n" is withheld, but generated
    ([("Step", 1), (" one", 2), (".", 3), ("", 0)], "eos", 4),  # an EOS is listed: a special id, empty text
])
def test_llama_server_stop_versus_eos(client_for, content, expected, tokens):
    """llama-server (C++) withholds the stop-string token from the log-probs and lists an EOS; its usage
    covers one choice only, so reasons and counts come from each choice's list."""
    items = [{"id": i, "token": t, "logprob": -0.25} for t, i in content]

    def reply(body, count):
        choice = {"index": 0, "text": "Step one.", "finish_reason": "stop", "logprobs": {"content": items}}
        return 200, {"choices": [choice, dict(choice, index=1)], "usage": {"completion_tokens": 1}}

    with ScriptedServer(reply) as srv:
        (c, d), = client_for(srv.url).generate(["hi"], GenParams(n=2, max_tokens=8, stop=("\n\n",)))
    assert (c.finish_reason, c.text, c.tokens) == (expected, "Step one.", tokens) and c == d


def test_llama_server_sends_no_logprobs_for_an_immediate_stop(client_for):
    def reply(body, count):
        return 200, {"choices": [{"index": 0, "text": "", "finish_reason": "stop", "logprobs": None}],
                     "usage": {"completion_tokens": 1}}

    with ScriptedServer(reply) as srv:
        (c,), = client_for(srv.url).generate(["hi"], GenParams(max_tokens=8, stop=("\n\n",)))
    assert (c.text, c.finish_reason, c.tokens, c.logprob_sum) == ("", "stop", 1, 0.0)


def test_llama_server_length_finish_counts_max_tokens_when_partial_characters_are_unlisted(client_for):
    """llama-server lists a token in its log-probs only once the text is whole UTF-8: tokens that ended inside
    a multi-byte character are generated but not listed (a fresh-clone CI run: 12 listed, max_tokens 16)."""
    content = [{"id": 7, "token": "x", "logprob": -0.5}] * 12

    def reply(body, count):
        choice = {"index": 0, "text": "x" * 12, "finish_reason": "length", "logprobs": {"content": content}}
        return 200, {"choices": [choice, dict(choice, index=1)]}

    with ScriptedServer(reply) as srv:
        (c, d), = client_for(srv.url).generate(["hi"], GenParams(n=2, max_tokens=16, stop=("\n\n",)))
    assert (c.finish_reason, c.tokens) == ("length", 16) and c == d


def test_llama_server_logprob_format_and_missing_logprobs(client_for):
    content = [{"token": "5", "logprob": -0.5}, {"token": ".", "logprob": -1.0}]
    with ScriptedServer(lambda b, c: (200, {"choices": [{"text": "5.", "finish_reason": "length",
                                                         "logprobs": {"content": content}}]})) as srv:
        (c,), = client_for(srv.url).generate(["hi"], GenParams(max_tokens=2))
    assert (c.tokens, c.logprob_sum) == (2, -1.5)
    with ScriptedServer(lambda b, c: (200, {"choices": [{"text": "5.", "finish_reason": "length"}]})) as srv:
        with pytest.raises(BackendError, match="no usable logprobs"):
            client_for(srv.url).generate(["hi"], GenParams(max_tokens=2))


def test_base_url_and_api_key_come_from_the_environment_as_in_the_openai_client(tiny_model_dir, monkeypatch):
    with ScriptedServer(ok) as srv, ScriptedServer(ok) as other:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
        for options in ({}, {"base_url": other.url, "api_key": "sk-given"}, {"base_url": other.url, "api_key": ""}):
            policy = make_backend("openai", str(tiny_model_dir), server_model="scripted-model", **options)
            try:
                (comps,) = policy.generate(["hi"], GenParams(max_tokens=3, seed=1))
            finally:
                policy.close()
            assert [c.text for c in comps] == ["s0"]
    assert srv.auth == ["Bearer sk-from-env"]  # neither given: both from the environment
    assert other.auth == ["Bearer sk-given", None]  # given values win; api_key="" sends no key
    monkeypatch.delenv("OPENAI_BASE_URL")
    from astro_reasoner.backends.openai_http import default_endpoint

    assert default_endpoint(None, None) == ("http://127.0.0.1:8000/v1", "sk-from-env")
