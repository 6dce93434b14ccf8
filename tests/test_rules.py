"""The rule registry: one class registered by name is a rule everywhere (config, CLI, reject, report)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from rsft_plugin.cli import main
from rsft_plugin.config import RejectConfig, load_config
from rsft_plugin.errors import ConfigError
from rsft_plugin.stages import rules
from rsft_plugin.stages.reject import reject
from rsft_plugin.stages.report import write_report
from rsft_plugin.stages.rules import Rule, Verdict, get_rule, register_rule, rule_names

from .stage_helpers import scored

BUILT_IN = ("threshold", "statistical", "best_of_n")


class AboveOne(Rule):
    """The tiny rule a newcomer would write: keep every candidate whose reward exceeds a cut."""

    name = "above_one"
    help = "keep every candidate whose reward exceeds 1."

    def decide(self, scored, r_max, rng):
        return [Verdict(s.reward > 1.0, float(s.reward > 1.0)) for s in scored]


@pytest.fixture
def registry(monkeypatch):
    """A copy of the registry for this test: what it registers is gone afterwards."""
    monkeypatch.setattr(rules, "_REGISTRY", dict(rules._REGISTRY))


def test_the_built_in_rules_are_registered_with_the_public_hook():
    assert rule_names() == BUILT_IN
    for name in BUILT_IN:
        assert issubclass(get_rule(name), Rule) and get_rule(name).name == name


def test_a_registered_rule_is_valid_in_config_cli_and_reject(registry, tmp_path):
    assert register_rule(AboveOne) is AboveOne
    assert "above_one" in rule_names()

    # config: rsft.yml and RejectConfig accept the new name
    config_file = tmp_path / "rsft.yml"
    config_file.write_text("reject:\n  rule: above_one\n", encoding="utf-8")
    assert load_config(config_file).reject.rule == "above_one"

    # CLI: --rule lists it and accepts it (the round then fails on a later config section, after reject)
    runner = CliRunner()
    refused = runner.invoke(main, ["--config", str(config_file), "retrain", "--rule", "bogus"])
    assert refused.exit_code == 2 and "above_one" in refused.output
    config_file.write_text("finetune:\n  batch_size: 0\n", encoding="utf-8")
    accepted = runner.invoke(main, ["--config", str(config_file), "retrain", "--rule", "above_one"])
    assert accepted.exit_code == 1 and "finetune.batch_size" in accepted.output
    assert "above_one" in runner.invoke(main, ["retrain", "--help"]).output

    # reject: the stage applies it and records it
    candidates = [scored(0, "good", 0.5, 1.7), scored(0, "poor", 0.5, 0.4), scored(1, "fine", 0.2, 1.2)]
    outcome = reject(candidates, RejectConfig(rule="above_one"), 2.0, np.random.default_rng(0))
    assert outcome.rule == "above_one" and outcome.boundary == {}
    assert [d.accepted for d in outcome.decisions] == [True, False, True]
    assert [d.accept_probability for d in outcome.decisions] == [1.0, 0.0, 1.0]

    # report: a rule without a drawing of its own still gets its histogram
    written = write_report(tmp_path / "report", {"rule": "above_one"}, outcome, None)
    assert {p.name for p in written} == {"report.json", "reward_histogram.png", "acceptance_by_topic.png"}


def test_an_unknown_rule_is_refused_with_the_valid_names(registry, tmp_path):
    register_rule(AboveOne)
    valid = "valid rules are threshold, statistical, best_of_n, above_one"
    with pytest.raises(ConfigError, match=f"reject.rule: unknown rule 'bogus'; {valid}"):
        RejectConfig(rule="bogus")
    config_file = tmp_path / "rsft.yml"
    config_file.write_text("reject:\n  rule: bogus\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=valid):
        load_config(config_file)
    with pytest.raises(ConfigError, match=f"unknown rule 'bogus'; {valid}"):
        get_rule("bogus")


def test_a_rule_name_is_registered_once(registry):
    class Impostor(AboveOne):
        name = "threshold"

    with pytest.raises(ValueError, match="already registered"):
        register_rule(Impostor)
    with pytest.raises(ValueError, match="identifier"):
        register_rule(type("Nameless", (Rule,), {}))
    assert get_rule("threshold").__name__ == "Threshold"


def test_a_rule_must_give_one_verdict_per_candidate(registry):
    @register_rule
    class Forgetful(AboveOne):
        name = "forgetful"

        def decide(self, scored, r_max, rng):
            return super().decide(scored, r_max, rng)[:-1]

    with pytest.raises(ValueError, match="gave 1 verdicts for 2 candidates"):
        reject([scored(0, "a", 0.5, 1.5), scored(0, "b", 0.5, 1.5)], RejectConfig(rule="forgetful"), 2.0,
               np.random.default_rng(0))


def test_the_statistical_rule_takes_its_envelope_as_a_parameter():
    config = RejectConfig(rule="statistical", r_max="observed", beta=0.3, s_min=0.7, r_min=0.4)
    rule = get_rule("statistical").from_config(config)
    assert (rule.beta, rule.envelope, rule.s_min, rule.r_min) == (0.3, "observed", 0.7, 0.4)
    assert rule.boundary(1.5) == {"beta": 0.3, "r_max": 1.5}
    with pytest.raises(ValueError, match="valid envelopes are prompt, observed, bound"):
        get_rule("statistical")(envelope="global")


@pytest.mark.parametrize("section", [{"rule": "threshold"}, {"rule": "best_of_n"},
                                     {"rule": "statistical", "r_max": "prompt"},
                                     {"rule": "statistical", "r_max": "observed"}])
def test_each_built_in_rule_draws_its_boundary_on_the_report(tmp_path, section):
    candidates = [scored(0, "a", 0.5, 1.7, similarity=0.9, rating=0.7), scored(0, "b", 0.5, 0.9)]
    outcome = reject(candidates, RejectConfig(**section), 1.7, np.random.default_rng(0))
    written = write_report(tmp_path, {}, outcome, None)
    assert (tmp_path / "reward_histogram.png") in written


def test_the_registry_loads_without_torch():
    """config validates reject.rule against the registry, and the web server loads the config."""
    code = "import sys, rsft_plugin.config, rsft_plugin.stages.rules; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
