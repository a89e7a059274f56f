"""Answer-extraction verifiers: what each spec extracts from adversarial text, and how it compares."""

import pickle
import sys
from fractions import Fraction

import pytest

from rlvr.errors import ConfigError
from rlvr.rewards.verifiers import (
    FORMAT_REWARDS,
    VERIFIERS,
    format_reward,
    parse_number,
    parse_verifier,
)


def extract(spec, text):
    return parse_verifier(spec).extract(text)


def test_the_registry_holds_exactly_the_documented_verifiers():
    assert VERIFIERS.names() == ["boxed", "choice", "exact", "gsm8k", "last-number", "math", "regex", "tag"]
    assert FORMAT_REWARDS.get("think-answer") is format_reward


@pytest.mark.parametrize("text,number", [
    ("47 + 38 = 85", "85"),                     # the result, not an operand
    ("first 3, then 7, finally 12", "12"),      # several candidates: the last wins
    ("x = -5", "-5"),
    ("x = \u22125", "-5"),                      # unicode minus U+2212
    ("it was +3", "3"),
    ("47-38", "38"),                            # a minus glued to a digit is subtraction
    ("a-5", "5"),                               # ... and so is one glued to a word
    ("costs 3.75 dollars", "3.75"),
    ("The answer is 85.", "85"),                # a sentence period is not a decimal point
    ("1,000", "1000"),
    ("12,345,678 people", "12345678"),
    ("1,2", "2"),                               # not a thousands separator: two numbers
    ("3,14", "14"),
    ("1,2345", "2345"),
    ("-$1,000.50", "-1000.50"),
    ("x2", None),                               # a number never starts inside a word
    ("H2O and x2", None),
    ("x2 is 9", "9"),
    ("85km", "85"),                             # a unit may follow
    ("v1.2", None),                             # nor inside a dotted version
    ("1.2.3", "1.2"),
    ("so...42", "42"),
    ("ratio 3/4", "3/4"),
    ("slope \u22123/4", "-3/4"),
    ("3/4.5", "4.5"),
    ("3/45.6", "45.6"),                         # not the fraction 3/4 followed by 5.6
    ("about 1e5 or 2.5E\u22123", "2.5e-3"),
    ("no digits here", None),
    ("", None),
])
def test_last_number_reads_the_last_well_formed_number(text, number):
    assert extract("last-number", text) == number


@pytest.mark.parametrize("text,value", [
    ("85", Fraction(85)), ("85.0", Fraction(85)), (" 85. ", Fraction(85)), ("1,000", Fraction(1000)),
    ("\u22125", Fraction(-5)), ("+3", Fraction(3)), ("$1,000", Fraction(1000)), ("50%", Fraction(50)),
    ("3/4", Fraction(3, 4)), ("2.5e-3", Fraction(1, 400)), ("-0.125", Fraction(-1, 8)),
    ("-3/4", Fraction(-3, 4)), ("3/0", None), ("1,2", None), ("85 apples", None), ("abc", None), ("", None),
    ("1e99999999", None),        # an exponent past the cap is not a number (no huge integer built)
    ("9" * 5000, None),          # more digits than int() converts: not a number, not a crash
])
def test_parse_number_reads_one_whole_number(text, value):
    assert parse_number(text) == value


@pytest.mark.parametrize("text,answer,score", [
    ("so 85.0", "85", 1.0), ("so 1,000", "1000", 1.0), ("so 1000", "1,000", 1.0),
    ("so \u22125", "-5", 1.0), ("so -5", "5", 0.0), ("so $85", "85", 1.0), ("so 3/4", "0.75", 1.0),
    ("so 86", "85", 0.0), ("so 85", "85 apples", 0.0), ("so 0.3333333", "1/3", 1.0),
    ("so 0.33333", "1/3", 0.0), ("so 1000000.5", "1000000", 1.0), ("so 0.5", "0", 0.0),
    ("so 0.0000001", "0", 1.0),                 # absolute below 1
    ("nothing", "0", 0.0),
])
def test_numbers_compare_by_value_within_the_tolerance(text, answer, score):
    assert parse_verifier("last-number").score(text, answer) == score


def test_tolerance_zero_is_exact_and_larger_tolerance_is_looser():
    assert parse_verifier("last-number", tolerance=0).score("0.3333333", "1/3") == 0.0
    assert parse_verifier("last-number", tolerance=0).score("85.00", "85") == 1.0
    assert parse_verifier("last-number", tolerance=0.01).score("3.14", "3.1416") == 1.0
    assert parse_verifier("last-number").score("3.14", "3.1416") == 0.0


@pytest.mark.parametrize("text,answer,score", [
    ("<answer>Paris.</answer>", "Paris", 1.0),          # one trailing period dropped
    ("<answer>New   York</answer>", "New York", 1.0),   # whitespace runs collapsed
    ("<answer>paris</answer>", "Paris", 0.0),           # case-sensitive
    ("<answer> 1,000 </answer>", "1000", 1.0),          # numbers by value
    ("<answer>Paris is nice</answer>", "Paris", 0.0),
])
def test_text_answers_compare_after_normalisation(text, answer, score):
    assert parse_verifier("tag:answer").score(text, answer) == score


@pytest.mark.parametrize("text,answer,score", [
    ("  85\n", "85", 1.0), ("85.0", "85", 0.0), ("Paris.", "Paris", 0.0), ("a  b", "a b", 0.0),
    ("Paris", "paris", 0.0), ("", "", 0.0),
])
def test_exact_is_string_equality_after_strip_only(text, answer, score):
    assert parse_verifier("exact").score(text, answer) == score


@pytest.mark.parametrize("text,content", [
    (r"so \boxed{\frac{1}{2}}", r"\frac{1}{2}"),                  # nested braces
    (r"\boxed{1} no, \boxed{ 2 } final", "2"),                    # the last one, stripped
    (r"\boxed{5", None),                                          # unclosed
    (r"\boxed{5} then \boxed{6", "5"),                            # an unclosed last box is ignored
    (r"\fbox{7}", "7"),
    (r"\boxed {8}", "8"),
    (r"\boxed{\{1,2\}}", r"\{1,2\}"),                             # escaped braces are not braces
    (r"\boxed{a \} b}", r"a \} b"),                           # ... even unbalanced ones
    (r"\boxed{\boxed{5}}", r"\boxed{5}"),                         # nested boxes: the outer one
    (r"\boxed{}", None),
    ("85", None),
])
def test_boxed_reads_the_last_complete_box(text, content):
    assert extract("boxed", text) == content


def test_boxed_compares_numbers_by_value():
    assert parse_verifier("boxed").score(r"\boxed{85.0}", "85") == 1.0
    assert parse_verifier("boxed").score(r"85 and \boxed{84}", "85") == 0.0


@pytest.mark.parametrize("text,content", [
    ("<answer> 42 </answer>", "42"),
    ("<answer>1</answer> no wait <answer>2</answer> trailing words", "2"),
    ("<answer>42", None),                                         # unclosed
    ("<answer>5</answer> then <answer>6", "5"),                   # the last complete one
    ("</answer> <answer>5", None),
    ("<answer>a <answer>b</answer>", "b"),                        # the opening tag nearest the close
    ("<answer></answer>", None),                                  # blank: no candidate
    ("<Answer>4</Answer>", None),                                 # tag names are case-sensitive
])
def test_tag_reads_the_last_complete_element(text, content):
    assert extract("tag:answer", text) == content


def test_tag_name_is_the_argument():
    assert extract("tag:final", "<answer>1</answer><final>2</final>") == "2"


@pytest.mark.parametrize("text,number", [
    ("48/2 = 24 and 24 + 48 = 72\n#### 72", "72"),
    ("#### 5\nthen #### $1,000 apples, 3 left", "1000"),         # the last ####, its first number
    ("#### \u22123", "-3"),
    ("the answer is 72", None),
    ("72 ####", None),
])
def test_gsm8k_reads_the_number_after_the_last_marker(text, number):
    assert extract("gsm8k", text) == number


@pytest.mark.parametrize("text,letter", [
    ("C", "C"), (" (c) ", "C"), ("c.", "C"),                     # the whole text is a letter
    ("The answer is (B).", "B"), ("Answer: D", "D"), ("**Answer:** E", "E"),
    ("The answer is B. (A) was tempting", "B"),                  # a stated answer beats a later (A)
    ("Answer: A ... on reflection the answer is: C", "C"),       # the last stated answer
    ("I think (A) is wrong and (B) right", "B"),
    ("I pick C.", "C"),
    ("A cat sat", None),                                         # an article is not a choice
    ("made in the U.S.A.", None),                                # nor a letter inside a word
    ("the answer is a cat", None),                               # lower case only when alone
    ("F", None), ("(F)", None),
])
def test_choice_reads_a_letter_by_the_documented_order(text, letter):
    assert extract("choice", text) == letter


def test_choice_compares_letters_case_insensitively():
    choice = parse_verifier("choice")
    assert choice.score("Answer: C", "c") == 1.0
    assert choice.score("Answer: C", "(C)") == 1.0
    assert choice.score("Answer: C", "D") == 0.0
    assert choice.score("no letter", "C") == 0.0


def test_regex_takes_group_one_of_the_last_match_else_the_whole_match():
    assert extract(r"regex:Final: (\S+)", "Final: 3 ... Final: 1,000") == "1,000"
    assert parse_verifier(r"regex:Final: (\S+)").score("Final: 3 ... Final: 1,000", "1000") == 1.0
    assert extract(r"regex:[A-Z]{3}", "ABC then XYZ") == "XYZ"
    assert extract(r"regex:(a)|(b)", "a b") is None            # group 1 took no part in the last match
    assert extract(r"regex:Final: (\S+)", "no final") is None


@pytest.mark.parametrize("spec,words", [
    ("regex:(", ["'regex:('", "bad regular expression", "'('"]),
    ("regex:", ["needs an argument", "regex:PATTERN"]),
    ("tag", ["needs an argument", "tag:NAME"]),
    ("tag:<a>", ["'tag:<a>'", "not a name"]),
    ("exact:x", ["takes no argument"]),
    ("lastnumber", ["unknown verifier 'lastnumber'", "tag:NAME", "did you mean 'last-number'"]),
    ("tags:answer", ["did you mean 'tag:answer'"]),
    ("Boxed", ["did you mean 'boxed'"]),
])
def test_bad_specs_fail_in_one_line_naming_the_value(spec, words):
    with pytest.raises(ConfigError) as info:
        parse_verifier(spec)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_an_unrelated_name_gets_the_list_but_no_guess():
    with pytest.raises(ConfigError, match="valid: boxed, choice") as info:
        parse_verifier("zzz")
    assert "did you mean" not in str(info.value)


@pytest.mark.parametrize("tolerance", [-1e-6, float("nan"), float("inf"), "0.1"])
def test_a_bad_tolerance_is_a_config_error(tolerance):
    with pytest.raises(ConfigError, match="tolerance"):
        parse_verifier("last-number", tolerance=tolerance)


def test_verifiers_survive_pickling_for_worker_processes():
    for spec, text, expected in [(r"regex:is (\d+)", "is 4 is 5", "5"), ("tag:answer", "<answer>4</answer>", "4")]:
        copy = pickle.loads(pickle.dumps(parse_verifier(spec)))
        assert copy.extract(text) == expected
        assert copy.spec == spec


def test_math_without_the_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "math_verify", None)   # makes `import math_verify` fail
    with pytest.raises(ConfigError, match=r"pip install 'rlvr\[math\]'") as info:
        parse_verifier("math")
    assert "\n" not in str(info.value)


def test_math_checks_symbolic_equivalence():
    pytest.importorskip("math_verify")
    math = parse_verifier("math")
    assert math.extract(r"so the answer is $\frac{1}{2}$") == r"\frac{1}{2}"
    assert math.score(r"so \boxed{\frac{1}{2}}", "0.5") == 1.0
    assert math.score(r"so \boxed{\frac{1}{3}}", "0.5") == 0.0
    assert math.score("$x^2+1$", "1+x^2") == 1.0               # the reference is read as LaTeX
    assert math.score("$x^2+2$", "1+x^2") == 0.0
    assert math.score("x = \u22125", "-5") == 1.0
    assert math.score("no maths here", "1") == 0.0


def test_math_rounds_floats_to_the_decimals_the_tolerance_asks_for():
    pytest.importorskip("math_verify")
    assert parse_verifier("math").score("0.5000001", "0.5") == 1.0              # 6 decimals
    assert parse_verifier("math").score("0.50001", "0.5") == 0.0
    assert parse_verifier("math", tolerance=1e-3).score("0.50001", "0.5") == 1.0
    assert parse_verifier("math", tolerance=0).score("0.5000001", "0.5") == 0.0


@pytest.mark.parametrize("text,score", [
    ("<think>47 + 38</think><answer>85</answer>", 1.0),
    ("\n <think>\nhm\n</think>\n\n<answer> 85 </answer>\n", 1.0),   # whitespace around and between
    ("<think></think><answer>85</answer>", 1.0),                   # blank thinking is allowed
    ("<think>a</think><answer> </answer>", 0.0),                   # a blank answer is not
    ("<think>a</think><answer>85</answer> extra", 0.0),            # text after the answer
    ("Sure! <think>a</think><answer>85</answer>", 0.0),            # text before the thinking
    ("<think>a</think> so <answer>85</answer>", 0.0),              # text between the blocks
    ("<answer>85</answer><think>a</think>", 0.0),                  # wrong order
    ("<think>a</think><answer>1</answer><answer>2</answer>", 0.0), # a second answer
    ("<think>a <think>b</think><answer>85</answer>", 0.0),         # a nested tag
    ("<think>a</think><answer>85", 0.0),                           # unclosed
    ("85", 0.0),
])
def test_format_reward_checks_the_think_then_answer_layout(text, score):
    assert format_reward(text) == score
