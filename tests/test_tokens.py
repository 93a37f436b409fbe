"""Fast tests of the workshop server's secrets (grader/serve/tokens.py): the strength and shape of
what is issued, which tokens are taken apart and which refused, and that each form's token
and the workshop code admit exactly what they are for."""

import secrets

from grader.serve import tokens


def test_an_issued_token_carries_its_full_strength_and_only_its_digest_is_stored():
    token, selector, stored = tokens.issue()
    verifier = token.split(".", 1)[1]
    assert token == f"{selector}.{verifier}"
    assert (len(selector), len(verifier)) == (len(secrets.token_urlsafe(9)), len(secrets.token_urlsafe(24)))  # 72 and 192 bits
    assert tokens.split(token) == (selector, verifier)
    assert verifier not in stored and tokens.matches(stored, verifier)
    assert not tokens.matches(stored, verifier[:-1] + ("A" if verifier[-1] != "A" else "B"))
    assert len({tokens.issue()[0] for _ in range(20)}) == 20


def test_a_token_is_split_at_its_first_dot_within_its_bounds_and_anything_else_is_refused():
    assert tokens.split("s.v") == ("s", "v")
    assert tokens.split("sel.ver.extra") == ("sel", "ver.extra")
    assert tokens.split("a" * 32 + "." + "b" * 64) == ("a" * 32, "b" * 64)
    for refused in ("no-dot-here", ".verifier", "selector.", "a" * 33 + ".v", "s." + "b" * 65, "", "."):
        assert tokens.split(refused) is None, refused


def test_the_servers_secret_is_256_random_bits():
    first, second = tokens.new_secret(), tokens.new_secret()
    assert len(first) == 64 and int(first, 16) >= 0 and first != second


def test_a_forms_token_is_good_for_its_own_purpose_under_its_own_secret_only():
    secret = tokens.new_secret()
    mine = tokens.form_token(secret, "upload:ada")
    assert tokens.form_token_ok(secret, "upload:ada", mine)
    assert not tokens.form_token_ok(secret, "upload:bob", mine)  # another student's upload form
    assert not tokens.form_token_ok(tokens.new_secret(), "upload:ada", mine)  # another server
    assert not tokens.form_token_ok(secret, "upload:ada", "")
    assert tokens.form_token(secret, "join") != tokens.form_token(secret, "upload:ada")


def test_the_workshop_code_is_read_without_case_spaces_or_dashes_and_nothing_else_is_forgiven():
    code = tokens.workshop_code()
    assert len(code) == 6 and set(code) <= set(tokens.CODE_ALPHABET) and not set(code) & set("01IO")
    assert tokens.same_code("ABC-DEF", "abc def")
    assert tokens.same_code("ABCDEF", " a b-c d e f ")
    assert tokens.same_code("abcdef", "ABCDEF")
    assert not tokens.same_code("ABCDEF", "ABCDEG")
    assert not tokens.same_code("ABCDEF", "ABCDE")
