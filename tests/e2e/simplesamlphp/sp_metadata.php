<?php
/*
 * Usage: php sp_metadata.php METADATA.xml OVERRIDES.json
 * Prints the saml20-sp-remote entry for an SP's metadata exactly as
 * SimpleSAMLphp's own metadata converter (admin > Federation > XML to
 * SimpleSAMLphp metadata converter) makes it, plus OVERRIDES (a JSON object of
 * options the admin would add by hand; a null value removes a parsed key).
 */
require_once '/usr/share/simplesamlphp/lib/_autoload.php';

use SimpleSAML\Metadata\SAMLParser;
use SimpleSAML\Utils\XML;

$xml = trim(file_get_contents($argv[1]));
$overrides = json_decode(file_get_contents($argv[2]), true, 16, JSON_THROW_ON_ERROR);
XML::checkSAMLMessage($xml, 'saml-meta');  // the converter's own check (no DOCTYPE)
// Stricter than the converter (which only logs a warning): SimpleSAMLphp's metadata schema.
$valid = XML::isValid($xml, 'saml-schema-metadata-2.0.xsd');
if ($valid !== true) {
    fwrite(STDERR, "not valid against saml-schema-metadata-2.0.xsd: $valid\n");
    exit(1);
}
$out = '';
foreach (SAMLParser::parseDescriptorsString($xml) as $entityId => $entity) {
    $sp = $entity->getMetadata20SP();
    if ($sp === null) {
        fwrite(STDERR, "$entityId: no SPSSODescriptor\n");
        exit(1);
    }
    unset($sp['entityDescriptor'], $sp['expire']);
    foreach ($overrides as $key => $value) {
        if ($value === null) {
            unset($sp[$key]);
        } else {
            $sp[$key] = $value;
        }
    }
    $out .= '$metadata[' . var_export($entityId, true) . '] = ' . var_export($sp, true) . ";\n";
}
echo $out;
