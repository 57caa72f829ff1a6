"""LLaVA conversation templates: every template renders a prompt exactly as the original LLaVA does (literal strings
below, written from the original's template definitions), and marks exactly the reply text as supervised."""

import pytest

from llava_noise.conversation import conv_templates

VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, "
    "and polite answers to the user's questions."
)
LLAVA_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, detailed, "
    "and polite answers to the human's questions."
)
MMTAG_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant is able to understand the "
    "visual content that the user provides, and assist the user with a variety of tasks using natural language.The "
    "visual content will be provided with the following format: <Image>visual content</Image>."
)
LLAMA_2_SYSTEM = (
    "You are a helpful, respectful and honest assistant. Always answer as helpfully as possible, while being safe.  "
    "Your answers should not include any harmful, unethical, racist, sexist, toxic, dangerous, or illegal content. "
    "Please ensure that your responses are socially unbiased and positive in nature.\n\nIf a question does not make "
    "any sense, or is not factually coherent, explain why instead of answering something not correct. If you don't "
    "know the answer to a question, please don't share false information."
)
LLAVA_LLAMA_2_SYSTEM = (
    "You are a helpful language and vision assistant. You are able to understand the visual content that the user "
    "provides, and assist the user with a variety of tasks using natural language."
)
# v0 (= default) opens with this worked exchange (its offset=2), rendered in "###Role: text" form.
V0_EXAMPLE = (
    "Human: What are the key differences between renewable and non-renewable energy sources?###Assistant: Renewable "
    "energy sources are those that can be replenished naturally in a relatively short amount of time, such as solar, "
    "wind, hydro, geothermal, and biomass. Non-renewable energy sources, on the other hand, are finite and will "
    "eventually be depleted, such as coal, oil, and natural gas. Here are some key differences between renewable and "
    "non-renewable energy sources:\n1. Availability: Renewable energy sources are virtually inexhaustible, while "
    "non-renewable energy sources are finite and will eventually run out.\n2. Environmental impact: Renewable energy "
    "sources have a much lower environmental impact than non-renewable sources, which can lead to air and water "
    "pollution, greenhouse gas emissions, and other negative effects.\n3. Cost: Renewable energy sources can be more "
    "expensive to initially set up, but they typically have lower operational costs than non-renewable sources.\n4. "
    "Reliability: Renewable energy sources are often more reliable and can be used in more remote locations than "
    "non-renewable sources.\n5. Flexibility: Renewable energy sources are often more flexible and can be adapted to "
    "different situations and needs, while non-renewable sources are more rigid and inflexible.\n6. Sustainability: "
    "Renewable energy sources are more sustainable over the long term, while non-renewable sources are not, and their "
    "depletion can lead to economic and social instability.\n###"
)
CHATML_SYSTEM = "<|im_start|>system\nAnswer the questions."
MPT_SYSTEM = (
    "<|im_start|>system\nA conversation between a user and an LLM-based AI assistant. The assistant gives helpful and "
    "honest answers."
)

CONVERSATIONS = {
    "one_open": ["<image>\nWhat is it?", None],
    "one": ["<image>\nWhat is it?", "A cat."],
    "two_open": ["<image>\nWhat is it?", "A cat.", "And now?", None],
    "two": ["<image>\nWhat is it?", "A cat.", "And now?", "A dog."],
}


def single(system, prefix=""):
    return {
        "one_open": system + "###" + prefix + "Human: <image>\nWhat is it?###Assistant:",
        "one": system + "###" + prefix + "Human: <image>\nWhat is it?###Assistant: A cat.###",
        "two_open": system + "###" + prefix + "Human: <image>\nWhat is it?###Assistant: A cat.###Human: And now?###Assistant:",
        "two": system + "###" + prefix + "Human: <image>\nWhat is it?###Assistant: A cat.###Human: And now?###Assistant: A dog.###",
    }


def vicuna(system):
    return {
        "one_open": system + " USER: <image>\nWhat is it? ASSISTANT:",
        "one": system + " USER: <image>\nWhat is it? ASSISTANT: A cat.</s>",
        "two_open": system + " USER: <image>\nWhat is it? ASSISTANT: A cat.</s>USER: And now? ASSISTANT:",
        "two": system + " USER: <image>\nWhat is it? ASSISTANT: A cat.</s>USER: And now? ASSISTANT: A dog.</s>",
    }


def llama_2(head, sep="<s>"):
    return {
        "one_open": head + "<image>\nWhat is it? [/INST]",
        "one": head + "<image>\nWhat is it? [/INST] A cat. </s>",
        "two_open": head + "<image>\nWhat is it? [/INST] A cat. </s>" + sep + "[INST] And now? [/INST]",
        "two": head + "<image>\nWhat is it? [/INST] A cat. </s>" + sep + "[INST] And now? [/INST] A dog. </s>",
    }


def chatml(system):
    user, assistant, end = "<|im_start|>user\n", "<|im_start|>assistant\n", "<|im_end|>"
    return {
        "one_open": system + end + user + "<image>\nWhat is it?" + end + assistant,
        "one": system + end + user + "<image>\nWhat is it?" + end + assistant + "A cat." + end,
        "two_open": system + end + user + "<image>\nWhat is it?" + end + assistant + "A cat." + end + user + "And now?" + end + assistant,
        "two": system + end + user + "<image>\nWhat is it?" + end + assistant + "A cat." + end + user + "And now?" + end + assistant + "A dog." + end,
    }


# plain: the original renders an unanswered message followed by "\n" ("one_open"); it cannot render a reply
# (sep2=None), so a reply follows the pretraining format of its preprocess_plain: image/text, caption, "\n".
PLAIN = {
    "one_open": "<image>\nWhat is it?\n",
    "one": "<image>\nWhat is it?A cat.\n",
    "two_open": "<image>\nWhat is it?A cat.\nAnd now?\n",
    "two": "<image>\nWhat is it?A cat.\nAnd now?A dog.\n",
}

EXPECTED = {
    "default": single(LLAVA_SYSTEM, V0_EXAMPLE),
    "v0": single(LLAVA_SYSTEM, V0_EXAMPLE),
    "llava_v0": single(LLAVA_SYSTEM),
    "v0_mmtag": single(MMTAG_SYSTEM),
    "v1": vicuna(VICUNA_SYSTEM),
    "vicuna_v1": vicuna(VICUNA_SYSTEM),
    "llava_v1": vicuna(LLAVA_SYSTEM),
    "v1_mmtag": vicuna(MMTAG_SYSTEM),
    "llama_2": llama_2("[INST] <<SYS>>\n" + LLAMA_2_SYSTEM + "\n<</SYS>>\n\n"),
    "llava_llama_2": llama_2("[INST] <<SYS>>\n" + LLAVA_LLAMA_2_SYSTEM + "\n<</SYS>>\n\n"),
    "mistral_instruct": llama_2("[INST] ", sep=""),
    "chatml_direct": chatml(CHATML_SYSTEM),
    "mistral_direct": chatml(CHATML_SYSTEM),
    "mpt": chatml(MPT_SYSTEM),
    "plain": PLAIN,
    "v0_plain": PLAIN,
}

# The supervised (reply) text of the "two" conversation: each reply with what ends it and, in "ROLE: reply" styles,
# the space after the colon.
REPLIES = {
    "single": [" A cat.###", " A dog.###"],
    "vicuna": [" A cat.</s>", " A dog.</s>"],
    "llama_2": [" A cat. </s>", " A dog. </s>"],
    "chatml": ["A cat.<|im_end|>", "A dog.<|im_end|>"],
    "plain": ["A cat.\n", "A dog.\n"],
}
REPLY_KIND = {
    "default": "single", "v0": "single", "llava_v0": "single", "v0_mmtag": "single",
    "v1": "vicuna", "vicuna_v1": "vicuna", "llava_v1": "vicuna", "v1_mmtag": "vicuna",
    "llama_2": "llama_2", "llava_llama_2": "llama_2", "mistral_instruct": "llama_2",
    "chatml_direct": "chatml", "mistral_direct": "chatml", "mpt": "chatml",
    "plain": "plain", "v0_plain": "plain",
}


def filled(name, messages):
    conv = conv_templates[name].copy()
    for k, message in enumerate(messages):
        conv.append_message(conv.roles[k % 2], message)
    return conv


def test_every_template_has_expected_prompts():
    assert sorted(conv_templates) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("shape", sorted(CONVERSATIONS))
def test_template_renders_prompt_like_the_original(name, shape):
    assert filled(name, CONVERSATIONS[shape]).get_prompt() == EXPECTED[name][shape]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_template_marks_exactly_the_replies(name):
    conv = filled(name, CONVERSATIONS["two"])
    pieces = conv.render_pieces()
    assert "".join(text for text, _ in pieces) == EXPECTED[name]["two"]
    assert [text for text, is_reply in pieces if is_reply] == REPLIES[REPLY_KIND[name]]
    # An open turn has nothing to supervise after the first reply.
    open_pieces = filled(name, CONVERSATIONS["two_open"]).render_pieces()
    assert [text for text, is_reply in open_pieces if is_reply] == REPLIES[REPLY_KIND[name]][:1]


def test_templates_are_not_modified_by_copies():
    conv = filled("v0", CONVERSATIONS["two"])
    assert len(conv.messages) == 6 and len(conv_templates["v0"].messages) == 2


@pytest.mark.parametrize(
    "name, expected",
    [
        ("v1", VICUNA_SYSTEM + " USER: <image>\nWhat is it? ASSISTANT:"),
        ("llava_v0", LLAVA_SYSTEM + "###Human: <image>\nWhat is it?###Assistant:"),
        (
            "v1_mmtag",
            MMTAG_SYSTEM + " USER: <Image><image></Image> ASSISTANT: Received.</s>USER: What is it? ASSISTANT:",
        ),
        (
            "v0_mmtag",
            MMTAG_SYSTEM + "###Human: <Image><image></Image>###Assistant: Received.###Human: What is it?###Assistant:",
        ),
    ],
)
def test_web_ui_image_message_is_shown_in_front_or_in_tags(name, expected):
    """A first message stored as (text, image, mode): the image goes in front of its text, or, in the mmtag
    templates, into a scripted exchange in front of it; that exchange is not a reply to supervise."""
    conv = conv_templates[name].copy()
    conv.append_message(conv.roles[0], ("What is it? <image>", object(), "Default"))
    conv.append_message(conv.roles[1], None)
    assert conv.get_prompt() == expected
    assert not any(is_reply for _, is_reply in conv.render_pieces())


def test_empty_message_is_an_open_turn_as_in_the_original():
    assert filled("v1", ["Hi", ""]).get_prompt() == VICUNA_SYSTEM + " USER: Hi ASSISTANT:"
    assert filled("llava_v0", ["Hi", ""]).get_prompt() == LLAVA_SYSTEM + "###Human: Hi###Assistant:"


def test_v0_example_turns_are_context_not_replies():
    conv = filled("v0", CONVERSATIONS["one"])
    assert [text for text, is_reply in conv.render_pieces() if is_reply] == [" A cat.###"]


@pytest.mark.parametrize(
    "name, stop",
    [("v1", "</s>"), ("llava_v0", "###"), ("llama_2", "</s>"), ("mpt", "<|im_end|>"), ("plain", "\n")],
)
def test_generation_stops_where_a_reply_ends(name, stop):
    from llava_noise.adapter import stop_string

    assert stop_string(conv_templates[name]) == stop
