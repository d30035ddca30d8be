"""A small evaluator of GitLab `rules:if` expressions, for workflow rules.

gitlab-ci-local ignores a workflow rule's `when: never`, so the tests decide
which workflow rule a pipeline takes with this evaluator, from the same YAML.
It covers what the pipeline uses: $VAR, "string", /regex/, ==, !=, =~, !~, &&, ||,
parentheses.
"""

import re

TOKEN = re.compile(
    r"\s*(?:(?P<var>\$\{?\w+\}?)|(?P<str>\"[^\"]*\"|'[^']*')"
    r"|(?P<regex>/(?:[^/\\]|\\.)+/[ims]*)|(?P<op>==|!=|=~|!~|&&|\|\||\(|\)))"
)
# A pattern's flags, as GitLab reads them (Gitlab::UntrustedRegexp::RubySyntax).
FLAGS = {"i": re.IGNORECASE, "m": re.DOTALL, "s": re.DOTALL}


def _tokens(expression: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    expression = expression.strip()
    while position < len(expression):
        match = TOKEN.match(expression, position)
        if not match:
            raise ValueError(f"cannot parse {expression[position:]!r} in {expression!r}")
        kind = match.lastgroup
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def evaluate(expression: str, variables: dict[str, str]) -> bool:
    """True when EXPRESSION holds for VARIABLES (missing variables are null)."""
    tokens = _tokens(expression)
    position = 0

    def peek() -> tuple[str, str] | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> tuple[str, str]:
        nonlocal position
        position += 1
        return tokens[position - 1]

    def value(token: tuple[str, str]) -> str | None:
        kind, text = token
        if kind == "var":
            return variables.get(text.strip("${}")) or None
        return text[1:-1]

    def matches(text: str | None, token: tuple[str, str]) -> bool:
        """`=~`: the pattern found anywhere in the text, null as empty text
        (lib/gitlab/ci/pipeline/expression/lexeme/matches.rb)."""
        kind, pattern = token
        assert kind == "regex", f"=~ needs a /pattern/ on its right in {expression!r}"
        body, flags = pattern[1:].rsplit("/", 1)
        flag_bits = 0
        for flag in flags:
            flag_bits |= FLAGS[flag]
        return re.search(body.replace("\\/", "/"), text or "", flag_bits) is not None

    def operand() -> bool:
        token = take()
        if token == ("op", "("):
            result = disjunction()
            assert take() == ("op", ")"), expression
            return result
        following = peek()
        if following in (("op", "=="), ("op", "!=")):
            operator = take()[1]
            equal = value(token) == value(take())
            return equal if operator == "==" else not equal
        if following in (("op", "=~"), ("op", "!~")):
            operator = take()[1]
            found = matches(value(token), take())
            return found if operator == "=~" else not found
        return bool(value(token))

    def conjunction() -> bool:
        result = operand()
        while peek() == ("op", "&&"):
            take()
            result = operand() and result
        return result

    def disjunction() -> bool:
        result = conjunction()
        while peek() == ("op", "||"):
            take()
            result = conjunction() or result
        return result

    result = disjunction()
    assert position == len(tokens), f"trailing tokens in {expression!r}"
    return result


def expand(text: str, variables: dict[str, str]) -> str:
    """Expand $VAR and ${VAR} in TEXT as GitLab expands variables in variables."""
    return re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m.group(1), ""), text)


def workflow_variables(workflow: dict, variables: dict[str, str]) -> dict | None:
    """The variables of the workflow rule a pipeline takes; None when it does not run."""
    for rule in workflow["rules"]:
        if "if" in rule and not evaluate(rule["if"], variables):
            continue
        if rule.get("when") == "never":
            return None
        return {key: expand(str(val), variables) for key, val in rule.get("variables", {}).items()}
    return None


def include_taken(rules: list | None, variables: dict[str, str]) -> bool:
    """Whether GitLab includes a file with these include RULES: none means always; else
    the first rule that matches decides (`when: never` skips), and no match skips
    (lib/gitlab/ci/config/external/rules.rb)."""
    if rules is None:
        return True
    for rule in rules:
        if "if" not in rule or evaluate(rule["if"], variables):
            return rule.get("when", "always") != "never"
    return False


def input_errors(spec_inputs: dict, arguments: dict) -> list[str]:
    """GitLab's errors for ARGUMENTS given to a file whose spec declares SPEC_INPUTS: any
    argument it does not declare, and a declared input without default left out
    (lib/gitlab/ci/config/interpolation/inputs.rb and inputs/base_input.rb)."""
    errors = []
    unknown = [name for name in arguments if name not in spec_inputs]
    if unknown:
        errors.append(f"unknown input arguments: {', '.join(unknown)}")
    for name, spec in spec_inputs.items():
        if name not in arguments and "default" not in (spec or {}):
            errors.append(f"`{name}` input: required value has not been provided")
    return errors
