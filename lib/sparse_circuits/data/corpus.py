"""Pretraining text: a procedural generator of SimpleStories-like stories, or the real SimpleStories.

The synthetic corpus is the offline default. It writes short lowercase stories (3-8 sentences, about 1.1k
distinct words) in which the constructs probed by the circuit tasks (SPEC section 4) are frequent and appear
in varied frames, not only as the exact task templates:

* pronoun reference: "when mia went to the park, she ...", "after leo climbed the tree, he ...",
  "kim was tired. she ...": a subject pronoun naming the only character of the clause;
* IOI-style object pronouns: "when leo was at the store, mia urged him to buy bread.": the object pronoun
  names the *other* character (name_1), with same- and opposite-gender pairs alike;
* questions and statements from the same words in another order ("can you see the bird?" /
  "you can see the bird."), half and half, in dialogue and in narration;
* dialogue and filler sentences (weather, places, objects, feelings) for variety.

Formatting is what the tokenizer round-trips: lowercase words separated by single spaces, the
punctuation ``. , ? ! "`` attached to the word before it (an opening quote to the word after it), and
no apostrophes. All text lives in module-level templates, so ``vocabulary()`` lists every token the
generator can emit. Randomness comes only from ``random.Random`` seeded with an int or a string, which
is stable across machines and Python versions (never ``hash()`` of a str).
"""

from __future__ import annotations

import os
import random
import re
import string
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain

# The word lists and templates below are wrapped by hand (dense tables, not one item per line).
# fmt: off
# ----------------------------------------------------------------------------------------------- names

MALE_NAMES: tuple[str, ...] = (
    "leo", "samuel", "jose", "peter", "alex",
    "tom", "ben", "sam", "noah", "liam", "owen", "eli", "finn", "oscar", "hugo", "felix", "ivan",
    "omar", "ravi", "theo", "milo", "ryan", "adam", "david", "carlos", "daniel", "luke", "oliver",
)
FEMALE_NAMES: tuple[str, ...] = (
    "mia", "rita", "kim", "maria", "lily",
    "emma", "anna", "sara", "nina", "lucy", "zoe", "ella", "chloe", "ava", "sofia", "julia", "nora",
    "elena", "hana", "laura", "maya", "olivia", "amy", "emily", "clara", "alice", "lena", "tina",
)
TASK_MALE_NAMES: tuple[str, ...] = MALE_NAMES[:5]
TASK_FEMALE_NAMES: tuple[str, ...] = FEMALE_NAMES[:5]
_TASK_NAMES = frozenset(TASK_MALE_NAMES + TASK_FEMALE_NAMES)
_GENDER = {**{n: "male" for n in MALE_NAMES}, **{n: "female" for n in FEMALE_NAMES}}
# subject, object, possessive pronoun and the noun for a child, per gender
_PRONOUNS = {"male": ("he", "him", "his", "boy"), "female": ("she", "her", "her", "girl")}
# Task names are the most frequent, as in SimpleStories; the others keep held-out names familiar.
_TASK_NAME_WEIGHT = 4


def gender_of(name: str) -> str:
    """'male' or 'female' for a corpus name; ValueError naming the word otherwise."""
    try:
        return _GENDER[name]
    except KeyError:
        raise ValueError(f"{name!r} is not a corpus name (see MALE_NAMES / FEMALE_NAMES)") from None


# ------------------------------------------------------------------------------ task phrase lists

# Past-tense actions of one character, used after "when {name}" and in other single-character frames.
PRONOUN_ACTIONS: tuple[str, ...] = (
    "ran to the beach", "went to the forest", "climbed the tree", "walked to school", "opened the door",
    "found a shiny shell", "saw a rainbow", "heard a strange noise", "woke up early",
    "looked out the window", "jumped into the lake", "played in the garden", "ate the cake",
    "baked some bread", "painted a picture", "built a sand castle", "read a book", "flew a kite",
    "rode a bike to town", "picked some flowers", "fed the ducks", "crossed the bridge", "visited the farm",
    "swam in the river", "sang a song", "danced in the rain", "drew a map", "lost the ball",
    "found a lost puppy", "planted a seed", "watched the stars", "cleaned the room", "made a new friend",
    "went fishing", "climbed the hill", "walked into the cave", "entered the castle",
    "reached the top of the hill", "finished the puzzle", "caught a fish", "missed the bus",
    "spilled the milk", "broke the vase", "fixed the old clock", "wrote a letter", "went outside",
    "came home", "got lost in the woods", "saw the big dog", "heard the bell ring", "opened the box",
    "found a key", "looked at the sky", "sat on the bench", "jumped over the fence", "tripped on a rock",
    "heard the thunder", "saw the snow", "walked along the shore", "went to the market",
    "arrived at the zoo", "looked under the bed", "tasted the soup", "kicked the ball",
    "hid behind the tree", "ran up the stairs", "slipped on the ice", "woke up from a dream",
    "found an old map", "watched the sunset", "saw a butterfly", "went to the library", "heard a bird sing",
)

# Where or how name_1 is when name_2 acts on them: "when {name_1} {situation}, {name_2} {verb} him".
IOI_SITUATIONS: tuple[str, ...] = (
    "was at the store", "sat by the river", "went to the park", "was in the kitchen", "stood near the door",
    "was at the beach", "sat under a tree", "was in the garden", "waited at the bus stop", "was at school",
    "walked home from school", "was in the library", "sat on the porch", "was at the market",
    "stood by the window", "was on the bridge", "sat at the table", "was at the farm", "played in the yard",
    "was at the lake", "stood in the rain", "was in the forest", "sat on the grass", "was at the zoo",
    "waited by the gate", "was on the hill", "was in the classroom", "sat near the fire",
    "stood at the corner", "was at the bakery", "rested under the old oak", "was by the pond",
    "was in the attic", "sat on the steps", "was at the fair", "was in the barn", "stood on the shore",
    "was at the station", "was at the party", "sat in the boat", "was in the hallway",
    "was at the playground", "sat by the fountain", "was in the meadow", "was at the museum",
    "stood near the fence", "was at the cafe", "was in the backyard", "sat on the swing",
    "was at the harbor", "stood under the bridge", "sat in the shade", "was near the well",
    "was at the camp", "sat by the lake", "was in the village", "walked past the shop", "was in the tent",
    "sat on a log", "was at the pool", "was in the field", "felt tired", "felt sad", "felt lost",
    "was hungry", "was cold", "was scared of the dark", "was sick", "was lonely", "was late for school",
    "lost a shoe", "dropped a book", "got home late", "came back from the trip", "finished the chores",
    "woke up sad", "was stuck in the mud", "had a bad day", "could not find the way",
    "was reading by the lamp", "was cooking dinner", "was painting the fence", "was feeding the hens",
    "was washing the dishes", "was packing a bag", "was tying a rope", "was carrying a heavy box",
    "was waiting for the train", "was learning to swim", "was trying to climb the wall",
    "was building a fort", "was counting the sheep", "was sweeping the floor", "was picking apples",
    "was walking the dog", "was fixing the bike", "was watering the plants", "was drawing a cat",
    "was looking at the stars", "was skating on the pond", "was writing a poem", "was making soup",
    "was stacking the blocks",
)

IOI_VERBS: tuple[str, ...] = (
    "welcomed", "reminded", "taught", "handed", "gave", "warned", "guided", "showed", "beckoned", "followed",
    "urged", "told", "supported", "hugged", "trusted", "helped", "invited", "comforted", "led", "thanked",
)

# What follows "{verb} him/her"; an empty string ends the sentence there.
_IOI_RESTS: dict[str, tuple[str, ...]] = {
    "welcomed": ("with a warm smile", "home", "inside", "to the party", "with open arms"),
    "reminded": ("to bring a coat", "to close the door", "about the test", "to drink water", "to be kind"),
    "taught": ("to swim", "how to fish", "a new song", "to tie a knot", "how to bake bread"),
    "handed": ("a cup of tea", "the key", "a warm blanket", "a red apple", "the map"),
    "gave": ("a small gift", "a cookie", "some bread", "a new book", "a big hug"),
    "warned": ("about the storm", "about the deep water", "not to go too far", "to be careful"),
    "guided": ("through the forest", "across the river", "back home", "to the door"),
    "showed": ("the way home", "a funny picture", "the old map", "a shiny stone", "how to paint"),
    "beckoned": ("to come closer", "over to the table", "to follow", "inside"),
    "followed": ("down the road", "into the woods", "to the shop", "all the way home"),
    "urged": ("to buy bread", "to rest", "to be brave", "to try again", "to go home"),
    "told": ("a secret", "a funny story", "the good news", "to wait", "about the lost cat"),
    "supported": ("all the way", "with kind words", "through the hard time", "every step of the way"),
    "hugged": ("", "tightly", "for a long time", "and smiled"),
    "trusted": ("", "with the key", "with the secret", "to keep the secret"),
    "helped": ("carry the box", "find the way", "up", "with the chores", "clean the room"),
    "invited": ("to the party", "to dinner", "to play", "to come along"),
    "comforted": ("", "with a soft voice", "gently", "with a warm hug"),
    "led": ("to the lake", "through the dark hall", "back to the house", "up the hill"),
    "thanked": ("for the help", "for the gift", "for being kind", "with a smile"),
}

# ------------------------------------------------------------------------------ story word lists

_REACTIONS = (
    "smiled", "laughed", "felt happy", "felt proud", "felt very brave", "took a deep breath",
    "sat down to rest", "looked around", "saw a big crab", "found a shiny coin", "heard birds singing",
    "felt the cool wind", "wanted to stay longer", "decided to go home", "began to sing", "shouted with joy",
    "waved at the clouds", "forgot about the time", "was very tired", "saw a little frog",
    "picked up a smooth stone", "made a wish", "jumped up and down", "wiped {s} face", "rubbed {s} eyes",
    "held {s} breath", "put on {s} hat", "packed {s} bag", "closed {s} eyes", "called out for help",
    "ran back home", "started to laugh", "felt a little scared", "saw something move", "found a small note",
    "thought about the day", "sang a happy song", "counted the clouds", "could not stop smiling",
    "knew it was a special day", "drank some cold water", "ate an apple", "felt warm inside",
    "wanted to tell everyone", "heard a soft sound", "spotted a tiny bird", "saw the sun go down",
    "wished the day would never end", "kept the shell in a box", "went to find a friend", "sat on a rock",
    "felt a little sad", "was ready for an adventure", "noticed a small door", "ran as fast as {p} could",
    "clapped {s} hands", "hummed a tune", "looked up at the moon", "felt the warm sun",
    "whispered a little prayer", "tiptoed across the floor", "giggled quietly", "stretched {s} arms",
    "shivered in the breeze", "blinked in surprise", "grinned from ear to ear", "scratched {s} head",
    "sighed softly", "gasped", "cheered loudly", "yawned and stretched", "nodded slowly",
    "felt the soft grass", "noticed a strange shadow", "picked a ripe berry", "skipped along the path",
    "listened to the waves", "chased a butterfly", "wrote a short poem", "waited patiently",
)
_FEELINGS = (
    "happy", "sad", "tired", "scared", "excited", "lonely", "proud", "angry", "hungry", "cold", "curious",
    "nervous", "calm", "sleepy", "bored", "surprised", "worried", "upset", "glad", "brave", "shy", "grumpy",
    "cheerful", "thirsty", "joyful", "lucky", "silly", "sorry", "safe", "confused", "peaceful", "hopeful",
    "jealous", "amazed", "puzzled", "thankful",
)
_WANTS = (
    "see the ocean", "find treasure", "play outside", "make a friend", "learn to swim", "win the race",
    "see the animals", "get some fresh air", "find the lost cat", "explore the woods", "build a fort",
    "see the stars", "pick berries", "feed the ducks", "watch the boats",
)
_SOLO_FRAMES = (  # one character; {p} is the subject pronoun naming {a}
    *("when {a} {act}, {p} {react}.",) * 6, *("after {a} {act}, {p} {react}.",) * 2,
    "as soon as {a} {act}, {p} {react}.", "because {a} {act}, {p} {react}.",
    "once {a} {act}, {p} {react}.", "before {a} {act}, {p} {react}.", "when {a} {act}, {p} was {feel}.",
    "{a} {act}. {p} {react}.", "{a} {act}, and then {p} {react}.", "{a} was {feel} because {p} {act}.",
    "{a} was {feel}. {p} {react}.", "{a} {act} because {p} wanted to {want}.",
    "when {a} {sit}, {p} {react}.", "while {a} {sit}, {p} {react}.", "{a} {sit}, so {p} {react}.",
    "when {a} {act}, {p} was very {feel}.",
)
_PAIR_FRAMES = (  # {a} is name_1, {b} name_2; {vp} = "{verb} {o} ..." where {o} is name_1's object pronoun
    *("when {a} {sit}, {b} {vp}.",) * 6, *("while {a} {sit}, {b} {vp}.",) * 2,
    "after {a} {sit}, {b} {vp}.", "as {a} {sit}, {b} {vp}.", "{a} {sit}, so {b} {vp}.",
    "{a} was {feel}, so {b} {vp}.", "{a} {sit}. {b} came over and {vp}.", "{b} saw that {a} {sit} and {vp}.",
    "when {a} was {feel}, {b} {vp}.", "{a} {sit}, and {b} {vp}.",
)
_BOY_GIRL_ADJ = ("little", "kind", "curious", "brave", "happy", "shy", "clever", "young", "cheerful", "quiet")
_HOME_PLACES = ("river", "forest", "sea", "hills", "park", "lake", "farm", "mountains", "village square",
                "woods")
_OPENINGS = (
    "one day, {a} {act}.", "once upon a time, there was a {adj} {kid} named {a}.",
    "{a} lived in a small house near the {home}.", "{a} and {b} were best friends.",
    "{a} and {b} lived on the same street.", "it was a {wadj} morning, and {a} {act}.",
    "there was once a {adj} {kid} called {a}.", "every morning, {a} {act}.",
)
_ENDINGS = (
    "that night, {a} went to sleep with a smile.", "it was a {good} day.",
    "from then on, {a} and {b} were good friends.", "{a} would never forget that day.",
    "{a} and {b} walked home together.", "at the end of the day, everyone was {feel}.",
    "{a} could not wait for the next adventure.", "and that was the best day of the summer.",
)
_GOOD = ("good", "great", "wonderful", "happy", "fun", "lovely", "perfect", "long")

# Filler: weather, places, objects, animals, people, food, feelings.
_SKY = ("blue", "gray", "clear", "cloudy", "bright", "dark", "pink", "orange", "full of stars", "pale")
_WEATHER = ("sunny", "rainy", "windy", "cold", "warm", "foggy", "snowy", "cloudy", "hot", "bright", "stormy",
            "chilly", "cool", "quiet")
_PLACES = (
    "park", "garden", "beach", "forest", "village", "market", "school", "kitchen", "farm", "lake", "river",
    "meadow", "library", "street", "hill", "town", "field", "zoo", "harbor", "playground", "castle", "cave",
    "valley", "island", "city", "orchard", "bakery", "station", "museum", "pond", "jungle", "desert",
)
_PLACE_ADJ = ("quiet", "busy", "full of people", "peaceful", "green", "noisy", "empty", "colorful", "cozy",
              "very old", "clean", "bright", "dark", "calm", "beautiful", "crowded", "sleepy", "magical",
              "muddy", "sunny", "lively", "huge", "tiny")
_COLORS = ("red", "blue", "yellow", "green", "purple", "orange", "pink", "white", "black", "brown", "gray",
           "golden", "silver")
_OBJECTS = (
    "box", "basket", "ball", "kite", "hat", "lamp", "clock", "book", "chair", "table", "shell", "stone",
    "blanket", "cup", "bottle", "bell", "bucket", "jar", "drum", "boat", "wagon", "ladder", "rope",
    "umbrella", "candle", "mirror", "pillow", "bench", "fence", "gate", "tower", "flag", "wheel", "sack",
    "feather", "spoon", "plate", "bowl", "pot", "broom", "brush", "pencil", "crayon", "letter", "card",
    "coin", "ring", "necklace", "button", "sock", "shoe", "boot", "coat", "scarf", "glove", "toy", "doll",
    "puzzle", "robot", "train", "truck", "sled", "shovel", "hammer", "teapot", "key", "map", "whistle",
    "balloon", "marble", "flute", "piano", "guitar", "backpack", "telescope", "compass", "lantern",
    "trumpet", "vase", "rug",
)
_OBJ_ADJ = ("big", "small", "old", "new", "shiny", "wooden", "tiny", "heavy", "soft", "broken", "round",
            "tall", "dusty", "striped", "bumpy", "smooth", "strange", "pretty", "plain", "giant", "fancy",
            "cracked", "warm", "light", "spotted", *_COLORS)
_NEAR = ("near", "behind", "next to", "in front of", "beside", "far from", "under", "on top of", "inside")
_ANIMALS = (
    "cat", "dog", "bird", "rabbit", "fox", "squirrel", "duck", "frog", "owl", "deer", "horse", "mouse",
    "goat", "turtle", "bee", "puppy", "kitten", "cow", "pig", "sheep", "hen", "crow", "lion", "tiger", "bear",
    "elephant", "monkey", "giraffe", "zebra", "whale", "dolphin", "crab", "snail", "ant", "ladybug",
    "spider", "bat", "wolf", "camel", "penguin", "seal", "parrot", "swan", "goose", "donkey", "lamb",
    "chick", "beaver", "hedgehog", "raccoon", "otter", "panda", "koala", "octopus", "lizard", "dragonfly",
)
_ANIMAL_ADJ = ("fluffy", "little", "big", "sleepy", "hungry", "friendly", "funny", "tiny", "old", "playful",
               "gentle", "noisy", "shy", "clever", "lazy", "fast", "slow", "silly", "spotted",
               "young")
_ANIMAL_ACTS = ("ran", "played", "slept", "sat", "hopped", "jumped", "rested", "hid", "waited", "sang",
                "looked around", "walked slowly", "danced", "ate some grass", "splashed in a puddle",
                "chased a leaf", "rolled in the mud", "yawned")
_ADULTS = ("the baker", "the farmer", "the old man", "the old woman", "the teacher", "the doctor",
           "the fisherman", "the king", "the queen", "the painter", "the gardener", "the librarian",
           "the shopkeeper", "the captain", "the nurse", "the cook", "the clown", "the wizard",
           "the mail carrier", "the zookeeper")
_ADULT_ACTS = ("waved from the window", "sold fresh bread", "told the children a story", "fixed the roof",
               "sang an old song", "planted tomatoes", "read the newspaper", "opened the shop",
               "swept the street", "fed the animals", "painted the wall", "rang the bell",
               "counted the coins", "laughed loudly", "carried a big basket", "walked by slowly",
               "cooked a big dinner", "played a tune on the flute", "watered the roses",
               "built a new fence")
_FAMILY = ("mom", "dad", "grandma", "grandpa", "uncle", "aunt", "brother", "sister", "cousin", "teacher",
           "neighbor", "friends", "puppy", "kitten")
_HOBBIES = (
    "draw animals", "read stories", "play the drum", "collect stones", "build towers", "watch birds",
    "dance", "bake cookies", "ride a bike", "play tag", "jump rope", "climb trees", "sing songs",
    "fly kites", "make paper boats", "plant flowers", "swim", "paint pictures", "play chess", "tell jokes",
    "write stories", "look at the clouds", "go fishing", "skate", "knit scarves", "solve puzzles",
    "help in the kitchen", "play the flute", "play the piano", "catch bugs", "feed the birds",
    "play hide and seek",
)
_FOODS = (
    "bread", "soup", "apples", "pears", "cookies", "pie", "cheese", "rice", "noodles", "carrots", "berries",
    "honey", "jam", "eggs", "pancakes", "milk", "juice", "grapes", "plums", "peaches", "corn", "beans",
    "potatoes", "muffins", "lemonade", "oranges", "bananas", "cherries", "nuts", "salad", "butter",
    "porridge", "toast", "yogurt", "melon", "peas", "tomatoes", "popcorn", "candy", "waffles",
)
_PLURALS = (
    "trees", "flowers", "houses", "boats", "birds", "clouds", "stars", "apples", "rocks", "shells", "leaves",
    "butterflies", "lanterns", "benches", "windows", "roses", "tulips", "pumpkins", "children", "kites",
    "bells", "candles", "puddles", "bridges", "carts", "tents", "books", "toys", "pebbles", "ducks", "cows",
    "ships", "mushrooms", "acorns", "sunflowers", "daisies", "fireflies", "balloons", "snowflakes",
)
_NUMBERS = ("two", "three", "four", "five", "six", "seven", "ten", "many", "some", "a few", "lots of")
_SEASONS = ("spring", "summer", "autumn", "winter")
_ROOMS = ("kitchen", "house", "hall", "room", "street", "shop", "air")
_CLOTHES = ("hat", "coat", "scarf", "dress", "shirt", "jacket", "sweater", "cap", "raincoat", "skirt")
_TIMES = ("early in the morning", "late in the afternoon", "almost dinner time", "a quiet evening",
          "the first day of spring", "the middle of winter", "a warm summer night", "a lazy sunday",
          "the last day of school", "a busy monday")
_FILLER = (
    "the sky was {skyc}.", "it was a {wadj} day.", "the {place} was {padj}.", "the sun was warm and bright.",
    "there was a {oadj} {obj} {near} the {place}.", "the {obj} was {oadj} and {oadj2}.", "the wind was soft.",
    "a {anadj} {animal} {aact} {near} the {obj}.", "birds sang in the trees.", "it was {time}.",
    "the air smelled like fresh bread.", "the {place} was {padj}, and the sky was {skyc}.",
    "everyone in the {place} felt {feel}.", "rain fell on the roof.", "the leaves were red and yellow.",
    "a {anadj} {animal} lived in the {place}.", "the stars were bright that night.",
    "the {obj} was {near} the {obj2}.", "the {place} had {num} {oadj} {plural}.",
    "there were {num} {plural} {near} the {place}.", "{adult} {adult_act}.", "{a} liked to {hobby}.",
    "{a} loved {food}.", "{a} had a {oadj} {obj}.", "{a} visited {s} {family}.",
    "for breakfast, {a} ate {food} and {food2}.", "the {animal} was {anadj}.",
    "the smell of {food} filled the {room}.", "in {season}, the {place} was {padj}.",
    "{a} wore a {color} {clothes}.", "the {season} was {wadj} that year.", "{a} felt {feel}.",
    "a {color} {vehicle} drove down the street.", *(("{nature}",) * 4),
)
_VEHICLES = ("car", "truck", "bus", "tractor", "van", "bicycle", "taxi", "scooter", "wagon", "cart")
_NATURE = (
    "the river sparkled in the sunlight.", "snow covered the rooftops.", "fog rolled over the hills.",
    "thunder rumbled far away.", "a rainbow appeared over the lake.", "the waves crashed on the sand.",
    "the moon glowed above the village.", "a gentle breeze shook the branches.",
    "the grass was wet with dew.", "little raindrops tapped on the window.",
    "the flowers bloomed in every color.", "the mountains were covered in white snow.",
    "the pond froze during the night.", "sunflowers nodded in the wind.",
    "crickets chirped in the tall grass.", "the trees swayed in the wind.",
    "the path was covered with fallen leaves.", "a cold wind whistled through the valley.",
    "the clouds looked like cotton candy.", "frogs croaked by the pond.",
    "the sunset painted the sky pink.", "owls hooted in the dark woods.",
    "the ground was soft after the rain.", "bees buzzed around the hive.",
)
_EXCLAIMS = (
    '"look at the {oadj} {obj}!" said {a}.', '"what a {good} day!" said {a}.', '"thank you!" said {a}.',
    '"wow, a {animal}!" shouted {a}.', '{a} shouted, "come here!"', '"hello, {b}!" said {a}.',
    '"let us go to the {place}!" said {a}.', '"i love the {place}," said {a}.',
    '"good night, {b}," said {a}.',
)

# ------------------------------------------------------------------------------- questions / statements

_QS_VPS = (
    "see the bird", "like the cake", "want the key", "help the farmer", "find the ball", "hear the music",
    "open the box", "play with the dog", "eat the apple", "read the book", "make a kite", "fix the bike",
    "climb the tree", "swim in the lake", "go to the park", "bake a pie", "catch the fish", "carry the bag",
    "draw a cat", "sing that song", "come to the party", "see the stars", "keep the secret", "ride the horse",
    "feed the cat", "plant the seeds", "find the way home", "cross the river", "clean the room",
    "build a tower", "fly the kite", "paint the fence", "walk to school", "share the cookies",
    "wear the red hat", "hold the lamp", "find the lost ring", "call the doctor", "visit the farm",
    "bring the map", "close the window", "count the stars", "watch the game", "use the ladder",
    "stay for dinner", "hear the bell", "lift the box", "reach the shelf", "tell a story", "take the bus",
    "wash the dishes", "pack the suitcase", "borrow the pencil", "return the book", "water the plants",
    "light the candle", "tie the shoes", "peel the potatoes", "fold the laundry", "wrap the present",
    "mail the letter", "chop the wood", "brush the horse", "milk the cow", "collect the eggs",
    "fill the bucket", "push the wagon", "pull the rope", "throw the ball", "dig a hole", "build a snowman",
    "sail the boat", "row the boat", "knock on the door", "play the violin", "hide the treasure",
    "follow the path", "hang the picture", "taste the jam", "smell the flowers", "touch the snow",
    "join the game", "learn the song", "remember the way", "guess the answer", "solve the riddle",
)
# Verb phrases naming the speaker, so their subject is always "you" ("can you help me?").
_QS_VPS_ME = ("help me", "come with us", "show me the way", "tell me a story", "wait for me", "play with us",
              "give me the ball", "lend me a pencil", "read to me", "stay with me", "help us")
_MODALS = ("can", "could", "will", "should", "would", "did", "must")
# (subject, present "be", past "be")
_BE_SUBJECTS = (("i", "am", "was"), ("you", "are", "were"), ("we", "are", "were"), ("they", "are", "were"),
                ("he", "is", "was"), ("she", "is", "was"))
_BE_PREDICATES = (
    "at the lake", "at home", "in the garden", "at school", "in the kitchen", "at the park", "on the boat",
    "in the forest", "at the beach", "outside", "upstairs", "in the car", "at the farm", "near the river",
    "in bed", "on the bus", "at the shop", "in the library", "ready", "late", "lost", "hungry", "tired",
    "happy", "asleep", "still here", "sad", "angry", "cold", "sick", "busy", "afraid",
)
_THING_ADJ = {
    "soup": ("hot", "cold", "good"), "water": ("cold", "deep", "warm"), "box": ("heavy", "empty", "open"),
    "door": ("open", "locked"), "cake": ("ready", "sweet"), "road": ("long", "wet"),
    "dog": ("hungry", "sleepy"), "cat": ("asleep", "hungry"), "bridge": ("safe", "old"),
    "shop": ("open", "closed"), "tea": ("warm", "hot"), "river": ("deep", "cold"),
    "hill": ("steep", "high"), "room": ("clean", "dark"), "bag": ("full", "heavy"), "game": ("fun", "over"),
    "night": ("dark", "cold"), "ice": ("thin", "slippery"), "bus": ("late", "full"),
    "apple": ("sweet", "red"), "kite": ("broken", "new"), "garden": ("green", "big"),
    "lamp": ("bright", "on"),
}
_WH_DO = (("why", "you", "i"), ("how", "you", "i"), ("where", "you", "i"), ("why", "they", "they"),
          ("how", "we", "we"), ("where", "they", "they"))
_WH_CAN = (("where", "we", "we"), ("how", "i", "you"), ("when", "we", "we"), ("how", "they", "they"))
_CONTAINERS = ("box", "bag", "basket", "jar", "sack", "bucket")
_QS_FORMS = (  # (question, statement); {x} subject, {m} modal, {v} verb phrase, {be} a form of "be" ...
    ("{m} {x} {v}?", "{x} {m} {v}."), ("{m} {x} {v}?", "{x} {m} {v}."), ("{m} {x} {v}?", "{x} {m} {v}."),
    ("do {xd} {v}?", "{xd} do {v}."), ("does {x3} {v}?", "{x3} does {v}."),
    ("{m} you {vme}?", "you {m} {vme}."),
    ("{be} {xb} {pred}?", "{xb} {be} {pred}."), ("{be} {xb} {pred}?", "{xb} {be} {pred}."),
    ("is the {thing} {tadj}?", "the {thing} is {tadj}."),
    ("was the {thing} {tadj}?", "the {thing} was {tadj}."),
    ("{wh} do {wq} {v}?", "that is {wh} {ws} {v}."),
    ("{whc} can {wcq} {v}?", "that is {whc} {wcs} can {v}."),
    ("who can {v}?", "{name} can {v}."), ("who wants to {v}?", "{name} wants to {v}."),
    ("is it time to {v}?", "it is time to {v}."),
    ("is there a {obj} in the {place}?", "there is a {obj} in the {place}."),
    ("what is in the {cont}?", "a {obj} is in the {cont}."), ("what do you want?", "that is what i want."),
)
_DIALOGUE_Q = ('"{q}" asked {a}.', '{a} asked, "{q}"', '"{q}" {a} asked.')
_DIALOGUE_S = ('"{s}," said {a}.', '{a} said, "{s}."', '"{s}," {a} said.')
_DIALOGUE_QA = ('"{q}" asked {a}. "{yes}{s}," said {b}.', '{a} asked, "{q}" {b} nodded. "{s}."')
_YES = ("yes, ", "oh, ", "well, ", "")
_WH_WORDS = frozenset(("who", "what", "why", "how", "where", "when"))

_TEMPLATE_SOURCES: tuple[Sequence[str], ...] = (
    MALE_NAMES, FEMALE_NAMES, ("he", "she", "him", "her", "his", "boy", "girl"), PRONOUN_ACTIONS,
    IOI_SITUATIONS, IOI_VERBS, *_IOI_RESTS.values(), _REACTIONS, _FEELINGS, _WANTS, _SOLO_FRAMES,
    _PAIR_FRAMES, ("came over and",), _BOY_GIRL_ADJ, _HOME_PLACES, _OPENINGS, _ENDINGS, _GOOD, _SKY,
    _WEATHER, _PLACES, _PLACE_ADJ, _OBJECTS, _OBJ_ADJ, _NEAR, _ANIMALS, _ANIMAL_ADJ, _ANIMAL_ACTS, _ADULTS,
    _ADULT_ACTS, _FAMILY, _HOBBIES, _FOODS, _PLURALS, _VEHICLES, _NATURE, _NUMBERS, _SEASONS, _ROOMS,
    _CLOTHES, _TIMES, _FILLER, _EXCLAIMS, _QS_VPS, _MODALS, [w for t in _BE_SUBJECTS for w in t],
    _BE_PREDICATES, list(_THING_ADJ), *_THING_ADJ.values(), [w for t in _WH_DO + _WH_CAN for w in t],
    _CONTAINERS, _QS_VPS_ME, [s for f in _QS_FORMS for s in f], _DIALOGUE_Q, _DIALOGUE_S, _DIALOGUE_QA, _YES,
)
# The word list each slot of the openings, endings and filler draws from; {a} and {b} are the two
# characters, {s} and {kid} are a's possessive pronoun and "boy" / "girl".
_SLOT_LISTS: dict[str, Sequence[str]] = {
    "act": PRONOUN_ACTIONS, "adj": _BOY_GIRL_ADJ, "home": _HOME_PLACES,
    "skyc": _SKY, "wadj": _WEATHER, "place": _PLACES, "padj": _PLACE_ADJ, "oadj": _OBJ_ADJ, "oadj2": _OBJ_ADJ,
    "obj": _OBJECTS, "obj2": _OBJECTS, "near": _NEAR, "animal": _ANIMALS, "anadj": _ANIMAL_ADJ,
    "aact": _ANIMAL_ACTS, "time": _TIMES, "feel": _FEELINGS, "good": _GOOD, "num": _NUMBERS,
    "plural": _PLURALS, "adult": _ADULTS, "adult_act": _ADULT_ACTS, "hobby": _HOBBIES, "food": _FOODS,
    "food2": _FOODS, "family": _FAMILY, "room": _ROOMS, "season": _SEASONS, "color": _COLORS,
    "clothes": _CLOTHES, "vehicle": _VEHICLES, "nature": _NATURE,
}
# fmt: on

# --------------------------------------------------------------------------------------- generator

_NAME_POOL = tuple(chain.from_iterable([n] * (_TASK_NAME_WEIGHT if n in _TASK_NAMES else 1) for n in _GENDER))
_NAME_INFO = {n: _PRONOUNS[g] for n, g in _GENDER.items()}  # name -> (he, him, his, boy) or the female forms
_IOI_VPS = tuple(
    tuple(f"{v} {{o}} {r}".rstrip() for r in _IOI_RESTS[v]) for v in IOI_VERBS
)  # per verb, so every verb is equally frequent whatever its number of endings
_THINGS = tuple(_THING_ADJ)


def _with_slots(templates: Sequence[str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Each template with the word-list slots it uses, so only those are drawn."""
    parse = string.Formatter().parse
    return tuple((t, tuple(f for _, f, _, _ in parse(t) if f in _SLOT_LISTS)) for t in templates)


_OPENING_SLOTS, _ENDING_SLOTS = _with_slots(_OPENINGS), _with_slots(_ENDINGS)
_FILLER_SLOTS, _EXCLAIM_SLOTS = _with_slots(_FILLER), _with_slots(_EXCLAIMS)
# Story units and their integer weights: a flat list, so one uniform draw picks a unit.
_UNITS = (
    *("solo",) * 6, *("pair",) * 5, *("dialogue",) * 4, *("narrated_qs",) * 2, *("filler",) * 4, "exclaim",
)  # fmt: skip
_VAL_TAG, _TRAIN_TAG = "val", "train"
_STREAMS = (_TRAIN_TAG, _VAL_TAG, "questions")  # "questions" feeds question_statement_pairs
# "a old owl" -> "an old owl" (no listed word keeps "a" before a vowel)
_AN_RE = re.compile(r"\ba (?=[aeiou])")


class StoryGenerator:
    """Unbounded, deterministic stream of synthetic stories.

    ``stream`` is "train" (the default), "val" (held-out stories, a different random stream for the same
    seed) or "questions" (used by ``question_statement_pairs``).

    ``counts`` tallies the constructs emitted so far (units, not tokens): ``pronoun`` (a subject pronoun
    naming the only character of its clause), ``ioi_same`` / ``ioi_opposite`` (object pronoun naming the
    other of two characters, by gender pair), ``question``, ``statement``, ``dialogue`` (quoted lines),
    ``filler``, ``exclaim``.
    """

    def __init__(self, seed: int = 0, stream: str = _TRAIN_TAG) -> None:
        if stream not in _STREAMS:
            raise ValueError(f"stream must be one of {_STREAMS}, got {stream!r}")
        # "train" seeds with the plain int; the other streams with a string (hashed through sha512 by
        # random.Random, stable across machines), so they never coincide with any int-seeded train stream.
        self._rng = random.Random(seed if stream == _TRAIN_TAG else f"sparse_circuits.corpus:{stream}:{seed}")
        self.counts: Counter[str] = Counter()

    def __iter__(self) -> Iterator[str]:
        while True:
            yield self.story()

    # -- small helpers (rng.random() indexing is ~3x faster than rng.choice)
    def _pick(self, seq: Sequence[str]) -> str:
        return seq[int(self._rng.random() * len(seq))]

    def _name(self, other: str | None = None) -> str:
        while True:
            name = _NAME_POOL[int(self._rng.random() * len(_NAME_POOL))]
            if name != other:
                return name

    def _solo(self, a: str) -> str:
        pick = self._pick
        p, _, s, _ = _NAME_INFO[a]
        self.counts["pronoun"] += 1
        frame = pick(_SOLO_FRAMES)
        react = pick(_REACTIONS).format(p=p, s=s)
        return frame.format(
            a=a,
            p=p,
            act=pick(PRONOUN_ACTIONS),
            sit=pick(IOI_SITUATIONS),
            react=react,
            feel=pick(_FEELINGS),
            want=pick(_WANTS),
        )

    def _pair(self, a: str, b: str) -> str:
        pick = self._pick
        self.counts["ioi_same" if _GENDER[a] == _GENDER[b] else "ioi_opposite"] += 1
        vp = pick(pick(_IOI_VPS)).format(o=_NAME_INFO[a][1])
        return pick(_PAIR_FRAMES).format(a=a, b=b, sit=pick(IOI_SITUATIONS), feel=pick(_FEELINGS), vp=vp)

    def _qs_pair(self) -> tuple[str, str]:
        """A question and the statement made of the same words in another order."""
        pick = self._pick
        q, s = pick(_QS_FORMS)
        xb = pick(_BE_SUBJECTS)
        past = self._rng.random() < 0.3
        thing = pick(_THINGS)
        wh_do, wh_can = pick(_WH_DO), pick(_WH_CAN)
        third = self._name() if self._rng.random() < 0.5 else pick(("he", "she"))
        x = third if self._rng.random() < 0.3 else pick(("i", "you", "we", "they"))
        slots = dict(
            m=pick(_MODALS),
            x=x,
            v=pick(_QS_VPS),
            vme=pick(_QS_VPS_ME),
            xd=pick(("i", "you", "we", "they")),
            x3=third,
            be=xb[2] if past else xb[1],
            xb=xb[0],
            pred=pick(_BE_PREDICATES),
            thing=thing,
            tadj=pick(_THING_ADJ[thing]),
            wh=wh_do[0],
            wq=wh_do[1],
            ws=wh_do[2],
            whc=wh_can[0],
            wcq=wh_can[1],
            wcs=wh_can[2],
            name=self._name(),
            obj=pick(_OBJECTS),
            place=pick(_PLACES),
            cont=pick(_CONTAINERS),
        )
        return q.format(**slots), s.format(**slots)

    def _dialogue(self, a: str, b: str) -> str:
        q, s = self._qs_pair()
        r = self._rng.random()
        self.counts["dialogue"] += 1
        if r < 0.3:  # question and answer: one of each, two quoted lines
            self.counts["question"] += 1
            self.counts["statement"] += 1
            self.counts["dialogue"] += 1
            yes = "" if q.split(" ", 1)[0] in _WH_WORDS else self._pick(_YES)  # "yes" answers yes/no only
            return self._pick(_DIALOGUE_QA).format(q=q, s=s[:-1], a=a, b=b, yes=yes)
        if r < 0.65:
            self.counts["question"] += 1
            return self._pick(_DIALOGUE_Q).format(q=q, a=a)
        self.counts["statement"] += 1
        return self._pick(_DIALOGUE_S).format(s=s[:-1], a=a)

    def _narrated_qs(self) -> str:
        q, s = self._qs_pair()
        r = self._rng.random()
        if r < 0.3:
            self.counts["question"] += 1
            self.counts["statement"] += 1
            return f"{q} {s}"
        self.counts["question" if r < 0.65 else "statement"] += 1
        return q if r < 0.65 else s

    def _fill(self, a: str, b: str, templates: tuple[tuple[str, tuple[str, ...]], ...]) -> str:
        """One of ``templates`` (from ``_with_slots``) with its slots drawn from their word lists."""
        pick = self._pick
        template, slots = pick(templates)
        words = {slot: pick(_SLOT_LISTS[slot]) for slot in slots}
        return template.format(a=a, b=b, s=_NAME_INFO[a][2], kid=_NAME_INFO[a][3], **words)

    def story(self) -> str:
        """One story of 3-8 units: mostly an opening, a body about two characters, maybe an ending."""
        rng, pick = self._rng, self._pick
        a = self._name()
        b = self._name(a)
        # A quarter of the stories start straight with a body unit, so that task prompts, which follow
        # <eos> directly ("<eos> when mia went to the park,"), look like story openings.
        parts = [self._fill(a, b, _OPENING_SLOTS)] if rng.random() >= 0.25 else []
        for _ in range(2 + int(rng.random() * 5) + (not parts)):
            unit = pick(_UNITS)
            x, y = (a, b) if rng.random() < 0.6 else (b, a)  # the main character is usually first
            if unit == "solo":
                parts.append(self._solo(x))
            elif unit == "pair":
                parts.append(self._pair(x, y))
            elif unit == "dialogue":
                parts.append(self._dialogue(x, y))
            elif unit == "narrated_qs":
                parts.append(self._narrated_qs())
            else:
                self.counts[unit] += 1
                parts.append(self._fill(x, y, _FILLER_SLOTS if unit == "filler" else _EXCLAIM_SLOTS))
        if rng.random() < 0.6:
            parts.append(self._fill(a, b, _ENDING_SLOTS))
        return _AN_RE.sub("an ", " ".join(parts))


def generate_stories(seed: int, n: int) -> list[str]:
    """The first ``n`` stories of the train stream for ``seed``."""
    gen = StoryGenerator(seed)
    return [gen.story() for _ in range(n)]


def question_statement_pairs(seed: int, n: int) -> list[tuple[str, str]]:
    """``n`` (question ending in "?", statement ending in ".") pairs from the corpus's own grammar.

    Drawn from a stream separate from the stories (same seed, different RNG), e.g.
    ("can you see the bird?", "you can see the bird.").
    """
    gen = StoryGenerator(seed, stream="questions")
    return [gen._qs_pair() for _ in range(n)]


# ------------------------------------------------------------------------------------ vocabulary

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_SLOT_RE = re.compile(r"\{\w*\}")


def tokenize_words(text: str) -> list[str]:
    """Words and single punctuation characters, as the word-level tokenizer splits them."""
    return _TOKEN_RE.findall(text)


def vocabulary() -> list[str]:
    """Every word and punctuation token the generator can emit, sorted."""
    words: set[str] = set()
    for source in _TEMPLATE_SOURCES:
        for text in source:
            words.update(tokenize_words(_SLOT_RE.sub(" ", text)))
    return sorted(words)


# ------------------------------------------------------------------------------------ statistics


def _alternation(phrases: Sequence[str]) -> str:
    return "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))


_NAMES_RE = _alternation(MALE_NAMES + FEMALE_NAMES)
# The exact task prompts (SPEC 4), found in the text, with the pronoun the corpus put after them.
_ACTIONS_RE = _alternation(PRONOUN_ACTIONS)
_PRONOUN_TASK_RE = re.compile(rf"(?:^|[.?!] )when ({_NAMES_RE}) (?:{_ACTIONS_RE}), (he|she) ")
_IOI_TASK_RE = re.compile(
    rf"(?:^|[.?!] )when ({_NAMES_RE}) (?:{_alternation(IOI_SITUATIONS)}), ({_NAMES_RE}) "
    rf"(?:{_alternation(IOI_VERBS)}) (him|her)\b"
)
_NAME_SET = frozenset(MALE_NAMES + FEMALE_NAMES)


def corpus_statistics(seed: int = 0, n_stories: int = 2000) -> dict:
    """Rates of each construct per story and per 1000 tokens over ``n_stories`` stories of ``seed``.

    Construct counts come from the generator (units emitted; see ``StoryGenerator``); the ``*_task_form``
    counts are found in the text and check that the exact task prompts occur, with the pronoun the task
    expects (``*_task_form_agree`` = share whose pronoun matches the gender of the referent, should be 1.0).
    ``mean_story_sentences`` counts sentence ends (``.`` ``?`` ``!``, inside quotes too).
    """
    gen = StoryGenerator(seed)
    stories = [gen.story() for _ in range(n_stories)]
    tokens = [tokenize_words(s) for s in stories]
    n_tokens = sum(map(len, tokens))
    words = Counter(chain.from_iterable(tokens))
    counts = dict(gen.counts)
    pronoun_agree = ioi_agree = 0
    pronoun_form = ioi_form = 0
    for story in stories:
        for name, pron in _PRONOUN_TASK_RE.findall(story):
            pronoun_form += 1
            pronoun_agree += _NAME_INFO[name][0] == pron
        for n1, _, obj in _IOI_TASK_RE.findall(story):
            ioi_form += 1
            ioi_agree += _NAME_INFO[n1][1] == obj
    counts["pronoun_task_form"] = pronoun_form
    counts["ioi_task_form"] = ioi_form
    constructs = ("pronoun", "pronoun_task_form", "ioi_same", "ioi_opposite", "ioi_task_form", "question",
                  "statement", "dialogue", "filler", "exclaim")  # fmt: skip
    n_q, n_s = counts.get("question", 0), counts.get("statement", 0)
    return {
        "seed": seed,
        "n_stories": n_stories,
        "n_tokens": n_tokens,
        "mean_story_tokens": n_tokens / n_stories,
        "mean_story_sentences": sum(words[p] for p in ".?!") / n_stories,
        "distinct_words": len(words),
        "vocabulary_size": len(vocabulary()),
        "per_story": {c: counts.get(c, 0) / n_stories for c in constructs},
        "per_1k_tokens": {c: 1000 * counts.get(c, 0) / n_tokens for c in constructs},
        "counts": {c: counts.get(c, 0) for c in constructs},
        "question_fraction": n_q / max(1, n_q + n_s),
        "pronoun_task_form_agree": pronoun_agree / max(1, pronoun_form),
        "ioi_task_form_agree": ioi_agree / max(1, ioi_form),
        "name_token_fraction": sum(words[n] for n in _NAME_SET) / n_tokens,
        "name_counts": {n: words[n] for n in MALE_NAMES + FEMALE_NAMES},
    }


# -------------------------------------------------------------------------- config and real data

SOURCES = ("synthetic", "simplestories")


@dataclass
class CorpusConfig:
    """Where the pretraining text comes from."""

    source: str = "synthetic"
    """``"synthetic"``: the procedural generator of this module (offline, unbounded); ``"simplestories"``:
    the SimpleStories dataset through Hugging Face ``datasets``."""

    seed: int = 0
    """Seed of the synthetic stream; the "val" stream derives a disjoint generator from it."""

    dataset: str = "SimpleStories/SimpleStories"
    """Hugging Face hub name, or a local file or directory of json/jsonl/parquet/csv files (simplestories)."""

    text_column: str = "story"
    """Column holding the text (simplestories)."""

    split: str = "train"
    """Dataset split used for training (simplestories)."""

    val_split: str = "test"
    """Dataset split used for held-out evaluation (simplestories); must differ from ``split``."""

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"corpus.source must be one of {SOURCES}, got {self.source!r}")
        if self.source == "simplestories" and self.split == self.val_split:
            raise ValueError(f"corpus.split and corpus.val_split are both {self.split!r}: validation would "
                             "repeat the training text")  # fmt: skip


_LOCAL_FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}
DataFiles = str | list[str] | dict[str, str | list[str]] | None


def _load_dataset(dataset: str, split: str, streaming: bool, data_files: DataFiles):
    """``datasets.load_dataset`` for a hub name, a local directory, or a single local data file."""
    import datasets

    looks_local = dataset.startswith((".", "/", "~")) or dataset.endswith(tuple(_LOCAL_FORMATS))
    if looks_local and not os.path.exists(os.path.expanduser(dataset)):
        raise FileNotFoundError(f"local dataset {dataset!r} does not exist (or use `source: synthetic`)")
    dataset = os.path.expanduser(dataset) if looks_local else dataset
    if data_files is None and os.path.isfile(dataset):
        ext = os.path.splitext(dataset)[1].lower()
        if ext not in _LOCAL_FORMATS:
            raise ValueError(f"cannot read {dataset!r}: expected one of {sorted(_LOCAL_FORMATS)}")
        return datasets.load_dataset(_LOCAL_FORMATS[ext], data_files={split: dataset}, split=split,
                                     streaming=streaming)  # fmt: skip
    return datasets.load_dataset(dataset, data_files=data_files, split=split, streaming=streaming)


def load_simplestories(
    dataset: str = "SimpleStories/SimpleStories",
    split: str = "train",
    text_column: str = "story",
    streaming: bool = True,
    data_files: DataFiles = None,
) -> Iterator[str]:
    """The lowercased texts of one split of SimpleStories (or any dataset with a text column).

    ``dataset`` is a hub name, or a local directory (split names taken from file names, e.g.
    ``train.jsonl`` / ``test.jsonl``) or a single local file (which is then the requested split).
    """
    try:
        ds = _load_dataset(dataset, split, streaming, data_files)
    except FileNotFoundError as e:
        if "local dataset" in str(e):
            raise
        raise RuntimeError(_unreachable(dataset, split, e)) from e
    except (ValueError, KeyError) as e:
        if "split" in str(e).lower():
            raise ValueError(f"dataset {dataset!r} has no split {split!r}: {e}") from e
        raise
    except Exception as e:  # network, missing repo, missing files: all mean "cannot reach it"
        raise RuntimeError(_unreachable(dataset, split, e)) from e
    columns = getattr(ds, "column_names", None)
    if columns is not None and text_column not in columns:
        raise ValueError(f"dataset {dataset!r} has no text column {text_column!r}; its columns are {columns}")
    return _texts(ds, dataset, text_column)


def _unreachable(dataset: str, split: str, e: Exception) -> str:
    return (
        f"could not load dataset {dataset!r} (split {split!r}): {type(e).__name__}: {e}. Without network "
        "access use the offline procedural corpus (`source: synthetic` in the corpus config) or point "
        "`dataset` at a local copy."
    )


def _texts(ds, dataset: str, text_column: str) -> Iterator[str]:
    for row in ds:
        if text_column not in row:  # streaming datasets may not know their columns before the first row
            raise ValueError(f"dataset {dataset!r} has no text column {text_column!r}; its columns are "
                             f"{sorted(row)}")  # fmt: skip
        if row[text_column]:  # a missing text (None) is skipped, not an error
            yield row[text_column].lower()


def iter_texts(cfg: CorpusConfig, stream: str = "train") -> Iterator[str]:
    """Unbounded stream of training ("train") or held-out ("val") texts for ``cfg``.

    Synthetic: the generator's train or val stream for ``cfg.seed``. SimpleStories: ``cfg.split`` or
    ``cfg.val_split``, read in order and started again from the beginning when it ends.
    """
    if stream not in (_TRAIN_TAG, _VAL_TAG):
        raise ValueError(f"stream must be 'train' or 'val', got {stream!r}")
    if cfg.source == "synthetic":
        yield from StoryGenerator(cfg.seed, stream=stream)
        return
    split = cfg.split if stream == _TRAIN_TAG else cfg.val_split
    while True:
        n = 0
        for text in load_simplestories(cfg.dataset, split, cfg.text_column):
            n += 1
            yield text
        if n == 0:
            raise ValueError(f"dataset {cfg.dataset!r} split {split!r} has no texts")
