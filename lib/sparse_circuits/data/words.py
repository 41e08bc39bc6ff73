"""The synthetic corpus's words: character names and genders, the task phrase lists (docs/method.md, Tasks) and the
word lists and templates the story generator fills in. Pure data, no randomness.

Everything the generator can write is listed here (``TEMPLATE_SOURCES``), so ``statistics.vocabulary()`` and
the tokenizer cover every token of the corpus. Formatting rules (lowercase, punctuation attached to the word
before it, no apostrophes) are described in ``generator``.
"""

from __future__ import annotations

from collections.abc import Sequence

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
TASK_NAMES = frozenset(TASK_MALE_NAMES + TASK_FEMALE_NAMES)
GENDER = {**{n: "male" for n in MALE_NAMES}, **{n: "female" for n in FEMALE_NAMES}}
# subject, object, possessive pronoun and the noun for a child, per gender
PRONOUNS = {"male": ("he", "him", "his", "boy"), "female": ("she", "her", "her", "girl")}
# Task names are the most frequent, as in SimpleStories; the others keep held-out names familiar.
TASK_NAME_WEIGHT = 4


def gender_of(name: str) -> str:
    """'male' or 'female' for a corpus name; ValueError naming the word otherwise."""
    try:
        return GENDER[name]
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
IOI_RESTS: dict[str, tuple[str, ...]] = {
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

REACTIONS = (
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
FEELINGS = (
    "happy", "sad", "tired", "scared", "excited", "lonely", "proud", "angry", "hungry", "cold", "curious",
    "nervous", "calm", "sleepy", "bored", "surprised", "worried", "upset", "glad", "brave", "shy", "grumpy",
    "cheerful", "thirsty", "joyful", "lucky", "silly", "sorry", "safe", "confused", "peaceful", "hopeful",
    "jealous", "amazed", "puzzled", "thankful",
)
WANTS = (
    "see the ocean", "find treasure", "play outside", "make a friend", "learn to swim", "win the race",
    "see the animals", "get some fresh air", "find the lost cat", "explore the woods", "build a fort",
    "see the stars", "pick berries", "feed the ducks", "watch the boats",
)
SOLO_FRAMES = (  # one character; {p} is the subject pronoun naming {a}
    *("when {a} {act}, {p} {react}.",) * 6, *("after {a} {act}, {p} {react}.",) * 2,
    "as soon as {a} {act}, {p} {react}.", "because {a} {act}, {p} {react}.",
    "once {a} {act}, {p} {react}.", "before {a} {act}, {p} {react}.", "when {a} {act}, {p} was {feel}.",
    "{a} {act}. {p} {react}.", "{a} {act}, and then {p} {react}.", "{a} was {feel} because {p} {act}.",
    "{a} was {feel}. {p} {react}.", "{a} {act} because {p} wanted to {want}.",
    "when {a} {sit}, {p} {react}.", "while {a} {sit}, {p} {react}.", "{a} {sit}, so {p} {react}.",
    "when {a} {act}, {p} was very {feel}.",
)
PAIR_FRAMES = (  # {a} is name_1, {b} name_2; {vp} = "{verb} {o} ..." where {o} is name_1's object pronoun
    *("when {a} {sit}, {b} {vp}.",) * 6, *("while {a} {sit}, {b} {vp}.",) * 2,
    "after {a} {sit}, {b} {vp}.", "as {a} {sit}, {b} {vp}.", "{a} {sit}, so {b} {vp}.",
    "{a} was {feel}, so {b} {vp}.", "{a} {sit}. {b} came over and {vp}.", "{b} saw that {a} {sit} and {vp}.",
    "when {a} was {feel}, {b} {vp}.", "{a} {sit}, and {b} {vp}.",
)
BOY_GIRL_ADJ = ("little", "kind", "curious", "brave", "happy", "shy", "clever", "young", "cheerful", "quiet")
HOME_PLACES = ("river", "forest", "sea", "hills", "park", "lake", "farm", "mountains", "village square",
                "woods")
OPENINGS = (
    "one day, {a} {act}.", "once upon a time, there was a {adj} {kid} named {a}.",
    "{a} lived in a small house near the {home}.", "{a} and {b} were best friends.",
    "{a} and {b} lived on the same street.", "it was a {wadj} morning, and {a} {act}.",
    "there was once a {adj} {kid} called {a}.", "every morning, {a} {act}.",
)
ENDINGS = (
    "that night, {a} went to sleep with a smile.", "it was a {good} day.",
    "from then on, {a} and {b} were good friends.", "{a} would never forget that day.",
    "{a} and {b} walked home together.", "at the end of the day, everyone was {feel}.",
    "{a} could not wait for the next adventure.", "and that was the best day of the summer.",
)
GOOD = ("good", "great", "wonderful", "happy", "fun", "lovely", "perfect", "long")

# Filler: weather, places, objects, animals, people, food, feelings.
SKY = ("blue", "gray", "clear", "cloudy", "bright", "dark", "pink", "orange", "full of stars", "pale")
WEATHER = ("sunny", "rainy", "windy", "cold", "warm", "foggy", "snowy", "cloudy", "hot", "bright", "stormy",
            "chilly", "cool", "quiet")
PLACES = (
    "park", "garden", "beach", "forest", "village", "market", "school", "kitchen", "farm", "lake", "river",
    "meadow", "library", "street", "hill", "town", "field", "zoo", "harbor", "playground", "castle", "cave",
    "valley", "island", "city", "orchard", "bakery", "station", "museum", "pond", "jungle", "desert",
)
PLACE_ADJ = ("quiet", "busy", "full of people", "peaceful", "green", "noisy", "empty", "colorful", "cozy",
              "very old", "clean", "bright", "dark", "calm", "beautiful", "crowded", "sleepy", "magical",
              "muddy", "sunny", "lively", "huge", "tiny")
COLORS = ("red", "blue", "yellow", "green", "purple", "orange", "pink", "white", "black", "brown", "gray",
           "golden", "silver")
OBJECTS = (
    "box", "basket", "ball", "kite", "hat", "lamp", "clock", "book", "chair", "table", "shell", "stone",
    "blanket", "cup", "bottle", "bell", "bucket", "jar", "drum", "boat", "wagon", "ladder", "rope",
    "umbrella", "candle", "mirror", "pillow", "bench", "fence", "gate", "tower", "flag", "wheel", "sack",
    "feather", "spoon", "plate", "bowl", "pot", "broom", "brush", "pencil", "crayon", "letter", "card",
    "coin", "ring", "necklace", "button", "sock", "shoe", "boot", "coat", "scarf", "glove", "toy", "doll",
    "puzzle", "robot", "train", "truck", "sled", "shovel", "hammer", "teapot", "key", "map", "whistle",
    "balloon", "marble", "flute", "piano", "guitar", "backpack", "telescope", "compass", "lantern",
    "trumpet", "vase", "rug",
)
OBJ_ADJ = ("big", "small", "old", "new", "shiny", "wooden", "tiny", "heavy", "soft", "broken", "round",
            "tall", "dusty", "striped", "bumpy", "smooth", "strange", "pretty", "plain", "giant", "fancy",
            "cracked", "warm", "light", "spotted", *COLORS)
NEAR = ("near", "behind", "next to", "in front of", "beside", "far from", "under", "on top of", "inside")
ANIMALS = (
    "cat", "dog", "bird", "rabbit", "fox", "squirrel", "duck", "frog", "owl", "deer", "horse", "mouse",
    "goat", "turtle", "bee", "puppy", "kitten", "cow", "pig", "sheep", "hen", "crow", "lion", "tiger", "bear",
    "elephant", "monkey", "giraffe", "zebra", "whale", "dolphin", "crab", "snail", "ant", "ladybug",
    "spider", "bat", "wolf", "camel", "penguin", "seal", "parrot", "swan", "goose", "donkey", "lamb",
    "chick", "beaver", "hedgehog", "raccoon", "otter", "panda", "koala", "octopus", "lizard", "dragonfly",
)
ANIMAL_ADJ = ("fluffy", "little", "big", "sleepy", "hungry", "friendly", "funny", "tiny", "old", "playful",
               "gentle", "noisy", "shy", "clever", "lazy", "fast", "slow", "silly", "spotted",
               "young")
ANIMAL_ACTS = ("ran", "played", "slept", "sat", "hopped", "jumped", "rested", "hid", "waited", "sang",
                "looked around", "walked slowly", "danced", "ate some grass", "splashed in a puddle",
                "chased a leaf", "rolled in the mud", "yawned")
ADULTS = ("the baker", "the farmer", "the old man", "the old woman", "the teacher", "the doctor",
           "the fisherman", "the king", "the queen", "the painter", "the gardener", "the librarian",
           "the shopkeeper", "the captain", "the nurse", "the cook", "the clown", "the wizard",
           "the mail carrier", "the zookeeper")
ADULT_ACTS = ("waved from the window", "sold fresh bread", "told the children a story", "fixed the roof",
               "sang an old song", "planted tomatoes", "read the newspaper", "opened the shop",
               "swept the street", "fed the animals", "painted the wall", "rang the bell",
               "counted the coins", "laughed loudly", "carried a big basket", "walked by slowly",
               "cooked a big dinner", "played a tune on the flute", "watered the roses",
               "built a new fence")
FAMILY = ("mom", "dad", "grandma", "grandpa", "uncle", "aunt", "brother", "sister", "cousin", "teacher",
           "neighbor", "friends", "puppy", "kitten")
HOBBIES = (
    "draw animals", "read stories", "play the drum", "collect stones", "build towers", "watch birds",
    "dance", "bake cookies", "ride a bike", "play tag", "jump rope", "climb trees", "sing songs",
    "fly kites", "make paper boats", "plant flowers", "swim", "paint pictures", "play chess", "tell jokes",
    "write stories", "look at the clouds", "go fishing", "skate", "knit scarves", "solve puzzles",
    "help in the kitchen", "play the flute", "play the piano", "catch bugs", "feed the birds",
    "play hide and seek",
)
FOODS = (
    "bread", "soup", "apples", "pears", "cookies", "pie", "cheese", "rice", "noodles", "carrots", "berries",
    "honey", "jam", "eggs", "pancakes", "milk", "juice", "grapes", "plums", "peaches", "corn", "beans",
    "potatoes", "muffins", "lemonade", "oranges", "bananas", "cherries", "nuts", "salad", "butter",
    "porridge", "toast", "yogurt", "melon", "peas", "tomatoes", "popcorn", "candy", "waffles",
)
PLURALS = (
    "trees", "flowers", "houses", "boats", "birds", "clouds", "stars", "apples", "rocks", "shells", "leaves",
    "butterflies", "lanterns", "benches", "windows", "roses", "tulips", "pumpkins", "children", "kites",
    "bells", "candles", "puddles", "bridges", "carts", "tents", "books", "toys", "pebbles", "ducks", "cows",
    "ships", "mushrooms", "acorns", "sunflowers", "daisies", "fireflies", "balloons", "snowflakes",
)
NUMBERS = ("two", "three", "four", "five", "six", "seven", "ten", "many", "some", "a few", "lots of")
SEASONS = ("spring", "summer", "autumn", "winter")
ROOMS = ("kitchen", "house", "hall", "room", "street", "shop", "air")
CLOTHES = ("hat", "coat", "scarf", "dress", "shirt", "jacket", "sweater", "cap", "raincoat", "skirt")
TIMES = ("early in the morning", "late in the afternoon", "almost dinner time", "a quiet evening",
          "the first day of spring", "the middle of winter", "a warm summer night", "a lazy sunday",
          "the last day of school", "a busy monday")
FILLER = (
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
VEHICLES = ("car", "truck", "bus", "tractor", "van", "bicycle", "taxi", "scooter", "wagon", "cart")
NATURE = (
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
EXCLAIMS = (
    '"look at the {oadj} {obj}!" said {a}.', '"what a {good} day!" said {a}.', '"thank you!" said {a}.',
    '"wow, a {animal}!" shouted {a}.', '{a} shouted, "come here!"', '"hello, {b}!" said {a}.',
    '"let us go to the {place}!" said {a}.', '"i love the {place}," said {a}.',
    '"good night, {b}," said {a}.',
)

# ------------------------------------------------------------------------------- questions / statements

QS_VPS = (
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
QS_VPS_ME = ("help me", "come with us", "show me the way", "tell me a story", "wait for me", "play with us",
              "give me the ball", "lend me a pencil", "read to me", "stay with me", "help us")
MODALS = ("can", "could", "will", "should", "would", "did", "must")
# (subject, present "be", past "be")
BE_SUBJECTS = (("i", "am", "was"), ("you", "are", "were"), ("we", "are", "were"), ("they", "are", "were"),
                ("he", "is", "was"), ("she", "is", "was"))
BE_PREDICATES = (
    "at the lake", "at home", "in the garden", "at school", "in the kitchen", "at the park", "on the boat",
    "in the forest", "at the beach", "outside", "upstairs", "in the car", "at the farm", "near the river",
    "in bed", "on the bus", "at the shop", "in the library", "ready", "late", "lost", "hungry", "tired",
    "happy", "asleep", "still here", "sad", "angry", "cold", "sick", "busy", "afraid",
)
THING_ADJ = {
    "soup": ("hot", "cold", "good"), "water": ("cold", "deep", "warm"), "box": ("heavy", "empty", "open"),
    "door": ("open", "locked"), "cake": ("ready", "sweet"), "road": ("long", "wet"),
    "dog": ("hungry", "sleepy"), "cat": ("asleep", "hungry"), "bridge": ("safe", "old"),
    "shop": ("open", "closed"), "tea": ("warm", "hot"), "river": ("deep", "cold"),
    "hill": ("steep", "high"), "room": ("clean", "dark"), "bag": ("full", "heavy"), "game": ("fun", "over"),
    "night": ("dark", "cold"), "ice": ("thin", "slippery"), "bus": ("late", "full"),
    "apple": ("sweet", "red"), "kite": ("broken", "new"), "garden": ("green", "big"),
    "lamp": ("bright", "on"),
}
WH_DO = (("why", "you", "i"), ("how", "you", "i"), ("where", "you", "i"), ("why", "they", "they"),
          ("how", "we", "we"), ("where", "they", "they"))
WH_CAN = (("where", "we", "we"), ("how", "i", "you"), ("when", "we", "we"), ("how", "they", "they"))
CONTAINERS = ("box", "bag", "basket", "jar", "sack", "bucket")
QS_FORMS = (  # (question, statement); {x} subject, {m} modal, {v} verb phrase, {be} a form of "be" ...
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
DIALOGUE_Q = ('"{q}" asked {a}.', '{a} asked, "{q}"', '"{q}" {a} asked.')
DIALOGUE_S = ('"{s}," said {a}.', '{a} said, "{s}."', '"{s}," {a} said.')
DIALOGUE_QA = ('"{q}" asked {a}. "{yes}{s}," said {b}.', '{a} asked, "{q}" {b} nodded. "{s}."')
YES = ("yes, ", "oh, ", "well, ", "")
WH_WORDS = frozenset(("who", "what", "why", "how", "where", "when"))

TEMPLATE_SOURCES: tuple[Sequence[str], ...] = (
    MALE_NAMES, FEMALE_NAMES, ("he", "she", "him", "her", "his", "boy", "girl"), PRONOUN_ACTIONS,
    IOI_SITUATIONS, IOI_VERBS, *IOI_RESTS.values(), REACTIONS, FEELINGS, WANTS, SOLO_FRAMES,
    PAIR_FRAMES, ("came over and",), BOY_GIRL_ADJ, HOME_PLACES, OPENINGS, ENDINGS, GOOD, SKY,
    WEATHER, PLACES, PLACE_ADJ, OBJECTS, OBJ_ADJ, NEAR, ANIMALS, ANIMAL_ADJ, ANIMAL_ACTS, ADULTS,
    ADULT_ACTS, FAMILY, HOBBIES, FOODS, PLURALS, VEHICLES, NATURE, NUMBERS, SEASONS, ROOMS,
    CLOTHES, TIMES, FILLER, EXCLAIMS, QS_VPS, MODALS, [w for t in BE_SUBJECTS for w in t],
    BE_PREDICATES, list(THING_ADJ), *THING_ADJ.values(), [w for t in WH_DO + WH_CAN for w in t],
    CONTAINERS, QS_VPS_ME, [s for f in QS_FORMS for s in f], DIALOGUE_Q, DIALOGUE_S, DIALOGUE_QA, YES,
)
# The word list each slot of the openings, endings and filler draws from; {a} and {b} are the two
# characters, {s} and {kid} are a's possessive pronoun and "boy" / "girl".
SLOT_LISTS: dict[str, Sequence[str]] = {
    "act": PRONOUN_ACTIONS, "adj": BOY_GIRL_ADJ, "home": HOME_PLACES,
    "skyc": SKY, "wadj": WEATHER, "place": PLACES, "padj": PLACE_ADJ, "oadj": OBJ_ADJ, "oadj2": OBJ_ADJ,
    "obj": OBJECTS, "obj2": OBJECTS, "near": NEAR, "animal": ANIMALS, "anadj": ANIMAL_ADJ,
    "aact": ANIMAL_ACTS, "time": TIMES, "feel": FEELINGS, "good": GOOD, "num": NUMBERS,
    "plural": PLURALS, "adult": ADULTS, "adult_act": ADULT_ACTS, "hobby": HOBBIES, "food": FOODS,
    "food2": FOODS, "family": FAMILY, "room": ROOMS, "season": SEASONS, "color": COLORS,
    "clothes": CLOTHES, "vehicle": VEHICLES, "nature": NATURE,
}

# ------------------------------------------------------------------------- the "rich" variant
# Frames of the opt-in rich corpus (docs/corpus.md, Rich variant), grouped by what they add over the basic
# frames: "task" is the exact task frame (kept, but a small share), "varied" other connectives and orders,
# "gap" an intervening phrase or clause between the referent and the pronoun, "distractor" a third character
# {c} that is never the referent, "recent" (pairs only) the referent named after the other character. Slots as
# in the basic frames, plus {c}, {act2} (a second action), {adv} (a time phrase), {rel} (a relative clause with
# no name or pronoun), {place} and {skyc}. The rule every frame follows: a subject pronoun names the subject of
# the clause (or sentence) its own clause is joined to; an object pronoun names that subject too, or the one the
# subject acted on ("{b} saw {a} ... and {vp}"), never the subject of its own verb; a name inside a phrase
# ("with {c}"), a relative clause or a nested clause ("after {c} ...") is never the referent, whatever its
# gender. Every word here is already in the basic vocabulary (a test checks it), so one tokenizer serves both.
RICH_SOLO_FRAMES: dict[str, tuple[str, ...]] = {  # {p} is the subject pronoun naming {a}
    "task": ("when {a} {act}, {p} {react}.", "when {a} {act}, {p} was {feel}."),
    "varied": (
        "after {a} {act}, {p} {react}.", "as soon as {a} {act}, {p} {react}.",
        "every time {a} {act}, {p} {react}.", "on the day {a} {act}, {p} {react}.", "as {a} {act}, {p} {react}.",
        "once {a} {act}, {p} {react}.", "before {a} {act}, {p} {react}.", "because {a} {act}, {p} {react}.",
        "{a} {act}, so {p} {react}.", "{a} {act}. soon {p} {react}.", "{a} {act}. then {p} {react}.",
        "{a} {act}, and then {p} {react}.", "{a} was {feel} when {p} {act}.", "{a} was {feel} because {p} {act}.",
        "{a} {react} when {p} {act}.", "while {a} {sit}, {p} {react}.", "{a} {act} because {p} wanted to {want}.",
        "{a} {sit}, so {p} {react}.",
    ),
    "gap": (
        "when {a} {act} {adv}, {p} {react}.", "when {a} {act} and {act2}, {p} {react}.",
        "when {a}, who {rel}, {act}, {p} {react}.", "after {a} {act} {adv}, {p} {react}.",
        "{a} {act}. the sky was {skyc}. {p} {react}.", "{a}, who {rel}, {act}. {p} {react}.",
        "when {a} {sit} {adv}, {p} {react}.", "as soon as {a} {act} and {act2}, {p} {react}.",
    ),
    "distractor": (
        "when {a} {act} with {c}, {p} {react}.", "when {a}, who was friends with {c}, {act}, {p} {react}.",
        "when {a} {act} after {c} {act2}, {p} {react}.", "when {a} {act} while {c} {sit}, {p} {react}.",
        "when {a} saw {c} at the {place}, {p} {react}.", "after {a} {act} with {c}, {p} {react}.",
        "{a} {act} while {c} {sit}, and then {p} {react}.", "{a} waved at {c} and {act}. then {p} {react}.",
        "because {a} {act} before {c} {act2}, {p} {react}.", "after {c} {act2}, {a} {act}, and then {p} {react}.",
        "while {c} {sit}, {a} {act}, so {p} {react}.", "when {c} {sit}, {a} {act}, and {p} {react}.",
    ),
}
RICH_PAIR_FRAMES: dict[str, tuple[str, ...]] = {  # {a} is the referent, {b} the subject; {vp} = "{verb} {o} ..."
    "task": ("when {a} {sit}, {b} {vp}.",),
    "varied": (
        "while {a} {sit}, {b} {vp}.", "after {a} {sit}, {b} {vp}.", "as {a} {sit}, {b} {vp}.",
        "{a} {sit}, so {b} {vp}.", "{a} was {feel}, so {b} {vp}.", "{a} {sit}. {b} came over and {vp}.",
        "{b} saw that {a} {sit} and {vp}.", "when {a} was {feel}, {b} {vp}.", "{a} {sit}, and {b} {vp}.",
        "every time {a} {sit}, {b} {vp}.", "because {a} {sit}, {b} {vp}.", "once {a} {sit}, {b} {vp}.",
    ),
    "recent": (
        "{b} saw {a} at the {place} and {vp}.", "{b} found {a} in the {place} and {vp}.", "{b} visited {a} and {vp}.",
        "{b} waited for {a}, then {vp}.", "{b} walked over to {a} and {vp}.", "{b} looked at {a} and {vp}.",
    ),
    "gap": (
        "when {a} {sit} {adv}, {b} {vp}.", "when {a}, who {rel}, {sit}, {b} {vp}.",
        "when {a} {sit}, {b}, who {rel}, {vp}.", "when {a} {sit}, {b} walked over and {vp}.",
        "{a} {sit}. the sky was {skyc}. {b} came over and {vp}.",
    ),
    "distractor": (
        "when {a} {sit}, {b} and {c} {vp}.", "when {a}, who was friends with {c}, {sit}, {b} {vp}.",
        "when {a} {sit} after {c} {act}, {b} {vp}.", "{b} and {c} saw {a} at the {place} and {vp}.",
        "while {a} {sit}, {b} and {c} came over and {vp}.",
    ),
}
# A second sentence after some pair frames: the name after the verb is the character who is not its subject.
RICH_PAIR_TAILS = (" {a} thanked {b}.", " {a} smiled at {b}.", " then {a} waved at {b}.", " {a} hugged {b}.")
# More question forms in the rich variant: negations, and wh-words inside statements, so neither "has a
# wh-word" nor "ends in subject-verb order" gives the answer away; the first words of the clause still do.
RICH_QS_FORMS = (
    *QS_FORMS, ("{m} {x} not {v}?", "{x} {m} not {v}."), ("{be} {xb} not {pred}?", "{xb} {be} not {pred}."),
    ("can you tell me {wh} {ws} {v}?", "i can tell you {wh} {ws} {v}."),
    ("{wh} do {wq} {v}?", "{name} asked {wh} {ws} {v}."),
)
# Said before a question or a statement in the rich variant, so the word that decides "?" or "." is not the first.
RICH_LEADS = ("oh, ", "well, ", "so ", "and ", "{b}, ")
RICH_TIMES = (
    "early in the morning", "late in the afternoon", "that evening", "one sunny morning", "on a rainy day",
    "in the middle of the night", "after dinner", "before breakfast", "last summer", "in the spring",
    "on a cold winter night", "after school", "the next morning", "on a lazy sunday",
)
RICH_RELATIVES = (
    *(f"loved {f}" for f in FOODS), *(f"liked to {h}" for h in HOBBIES), *(f"was {f}" for f in FEELINGS),
    *(f"lived near the {h}" for h in HOME_PLACES), "had a new friend", "was very tired", "felt very brave",
)
RICH_SLOT_LISTS: dict[str, Sequence[str]] = {
    "act": PRONOUN_ACTIONS, "act2": PRONOUN_ACTIONS, "sit": IOI_SITUATIONS, "feel": FEELINGS, "want": WANTS,
    "adv": RICH_TIMES, "rel": RICH_RELATIVES, "place": PLACES, "skyc": SKY,
}
RICH_TEMPLATE_SOURCES: tuple[Sequence[str], ...] = (
    *RICH_SOLO_FRAMES.values(), *RICH_PAIR_FRAMES.values(), RICH_PAIR_TAILS, [s for f in RICH_QS_FORMS for s in f],
    RICH_LEADS, RICH_TIMES, RICH_RELATIVES,
)
# fmt: on

NAME_INFO = {n: PRONOUNS[g] for n, g in GENDER.items()}  # name -> (he, him, his, boy) or the female forms
