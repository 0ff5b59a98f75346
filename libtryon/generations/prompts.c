/*
 * The try-on prompt templates, one per category, version TRYON_GENERATIONS_PROMPT_VERSION.
 *
 * Every template says the same three things, in the model's own terms: image 1 is the
 * person and everything about them stays (face, identity, body shape, pose, skin,
 * hair, background, light); image 2 is the item and everything about it stays (colour,
 * print, texture, logos, proportions); put the item on the person where it belongs,
 * photorealistically. Changing any text here changes results: bump the version.
 */
#include <string.h>

#include <tryon/generations.h>

#define KEEP_PERSON                                                                        \
  "Keep the person from the first image exactly as they are: the same face and identity, " \
  "facial expression, skin tone, hair, body shape and proportions, pose, and the same "    \
  "background, framing and lighting. "
#define KEEP_ITEM                                                                     \
  "Reproduce the item from the second image faithfully: its exact colours, print or " \
  "pattern, fabric texture, logos, details and proportions; do not redesign it. "
#define FINISH                                                                              \
  "The result must look like a real photograph of this person wearing this item: natural "  \
  "fit, folds, shadows and occlusion, consistent with the scene's light. Output one image " \
  "of the whole person as framed in the first image, with no text, borders or collage."

typedef struct template {
  const char *category;
  const char *text;
}
template;

static const template templates[] = {
    {"top", "Virtual try-on. Dress the person from the first image in the top (shirt, "
            "T-shirt, blouse, sweater or similar) shown in the second image, replacing what "
            "they wear on the upper body. " KEEP_PERSON KEEP_ITEM FINISH},
    {"bottom",
     "Virtual try-on. Dress the person from the first image in the bottoms "
     "(trousers, jeans, skirt or shorts) shown in the second image, replacing what "
     "they wear below the waist; keep their top and shoes. " KEEP_PERSON KEEP_ITEM FINISH},
    {"dress", "Virtual try-on. Dress the person from the first image in the dress or jumpsuit "
              "shown in the second image, replacing their current outfit; keep their shoes "
              "when visible. " KEEP_PERSON KEEP_ITEM FINISH},
    {"outerwear", "Virtual try-on. Put the outerwear (coat, jacket, blazer or similar) shown in "
                  "the second image on the person from the first image, over their current "
                  "clothes, worn naturally. " KEEP_PERSON KEEP_ITEM FINISH},
    {"shoes", "Virtual try-on. Put the shoes shown in the second image on the feet of the "
              "person from the first image, replacing their current footwear, in the correct "
              "perspective and size. " KEEP_PERSON KEEP_ITEM FINISH},
    {"headwear",
     "Virtual try-on. Put the headwear (hat, cap, beanie or similar) shown in the "
     "second image on the head of the person from the first image, sized and "
     "angled to fit their head; hair may tuck under it naturally. " KEEP_PERSON KEEP_ITEM FINISH},
    {"glasses",
     "Virtual try-on. Put the glasses or sunglasses shown in the second image on "
     "the face of the person from the first image, resting on the nose and ears, "
     "sized to their face, with realistic lens reflections. " KEEP_PERSON KEEP_ITEM FINISH},
    {"bag", "Virtual try-on. Have the person from the first image carry the bag shown in the "
            "second image in a natural way for that bag (on the shoulder, across the body or "
            "in the hand), at its true size relative to the person. " KEEP_PERSON KEEP_ITEM FINISH},
    {"jewelry", "Virtual try-on. Put the jewellery shown in the second image on the person from "
                "the first image where it is worn (neck, ears, wrist or fingers), at its true "
                "size, with realistic metal and stone reflections. " KEEP_PERSON KEEP_ITEM FINISH},
    {"other",
     "Virtual try-on. Put the fashion item shown in the second image on the person "
     "from the first image, worn or carried the way such an item is normally worn. " KEEP_PERSON
         KEEP_ITEM FINISH},
};

const char *tryon_generations_prompt(const char *category) {
  for (size_t i = 0; category != NULL && i < sizeof templates / sizeof templates[0]; i++) {
    if (strcmp(templates[i].category, category) == 0)
      return templates[i].text;
  }
  return NULL;
}

bool tryon_generations_category_ok(const char *category) {
  return tryon_generations_prompt(category) != NULL;
}
